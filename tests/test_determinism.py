"""Same seed, same numbers: a run is bit-reproducible on the CPU at its thread count."""

import subprocess
import sys

import torch

from avbench.data.registry import load_benchmark
from avbench.protocol.run import run_protocol

# AVCA at its real widths with in-batch negatives: the gather backward (index_put_ with
# accumulation) is what reduced in a thread-scheduled order before deterministic mode
SETTINGS = {"epochs": 2, "batches_per_epoch": 12, "threads": 2}


def _run(seed=0, **extra):
    r = run_protocol(load_benchmark("synthetic"), "avca", seed=seed, overrides={**SETTINGS, **extra})
    return r, [e["loss"] for e in r.stage1 + r.stage2], (r.S, r.U, r.HM, r.ZSL, r.beta, r.best_epoch)


def test_the_same_seed_twice_at_two_threads_is_bit_identical():
    before = torch.get_num_threads()
    try:
        a, losses_a, metrics_a = _run()
        b, losses_b, metrics_b = _run()
        assert losses_a == losses_b and metrics_a == metrics_b
        assert a.threads == 2 and a.config["threads"] == 2 and a.device == "cpu"
    finally:
        torch.set_num_threads(before)


def test_the_thread_count_is_a_setting_of_the_run_and_recorded(tmp_path):
    """`avbench run` uses one thread unless told otherwise, whatever the machine's cores, and the
    store records the count (so cells never mix thread counts: it is part of the configuration)."""
    db = f"sqlite:///{tmp_path / 'r.db'}"
    code = (
        "import sys; from avbench.cli import main; sys.exit(main(['run', '--quiet', '--json', '--db', "
        f"{db!r}, '--epochs', '1', '--batches-per-epoch', '3', '--set', 'batch_size=32'] + sys.argv[1:]))"
    )
    outs = []
    for extra in ([], ["--threads", "2"]):
        p = subprocess.run([sys.executable, "-c", code, *extra], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        outs.append(p.stdout)
    from avbench.results.store import Store

    rows = Store(db).rows(columns=["threads", "config", "entry"])
    assert [r["threads"] for r in rows] == [1, 2] and [r["config"]["threads"] for r in rows] == [1, 2]
    assert rows[0]["entry"] != rows[1]["entry"]


def test_row_gathers_equal_indexing_and_add_repeated_rows_in_index_order():
    """The methods gather rows (in-batch negatives, class embeddings) with ``layers.rows``: the
    rows of ``x[index]``, and a backward that adds repeated rows in index order, so it equals
    deterministic-mode advanced indexing bit for bit and is reproducible at 2 threads without it."""
    from torch import nn

    from avbench.methods.layers import gathered, rows

    before_threads, before_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        torch.set_num_threads(2)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(256, 300, generator=gen)
        index = torch.randint(0, 256, (256,), generator=gen)  # repeated rows, as in-batch negatives have
        g = torch.randn(256, 300, generator=gen)

        def grad(gather):
            leaf = x.clone().requires_grad_(True)
            gather(leaf, index).backward(g)
            return leaf.grad

        torch.use_deterministic_algorithms(False)
        first, second = grad(rows), grad(rows)
        assert torch.equal(first, second)
        torch.use_deterministic_algorithms(True)
        assert torch.equal(first, grad(lambda t, i: t[i]))
        assert torch.equal(rows(x, index), x[index])

        # gathered: the first Linear once per row of x, the later layers on the gathered rows
        net = nn.Sequential(nn.Linear(300, 64), nn.BatchNorm1d(64), nn.ReLU()).train()
        classes = torch.randn(30, 300, generator=gen)
        label = torch.randint(0, 30, (256,), generator=gen)
        torch.testing.assert_close(gathered(net, classes, label), net(classes[label]))
    finally:
        torch.set_num_threads(before_threads)
        torch.use_deterministic_algorithms(before_det)


def test_attention_on_few_tokens_equals_sdpa_bit_for_bit_and_restores_the_thread_count():
    """``layers.attention`` runs AVCA's, MFT's and EZ-AVGZL's few-token attention on one
    intra-op thread: its output and its gradients must equal ``F.scaled_dot_product_attention``
    at two threads bit for bit (with a mask too, and for TCAF-length sequences, which it leaves
    alone), and the caller's thread count must be back after forward and backward."""
    import torch.nn.functional as F

    from avbench.methods.layers import SHORT_SEQUENCE, attention

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        gen = torch.Generator().manual_seed(0)
        for B, H, T, D, masked in [(64, 3, 2, 100, False), (32, 4, SHORT_SEQUENCE, 32, True), (16, 3, 12, 100, True)]:
            qkv = torch.randn(3, B, H, T, D, generator=gen)
            g = torch.randn(B, H, T, D, generator=gen)
            mask = torch.rand(B, 1, T, T, generator=gen) > 0.3 if masked else None
            if masked:
                mask[..., 0] = True  # every query sees a key

            def run(f):
                q, k, v = (t.clone().requires_grad_(True) for t in qkv)
                out = f(q, k, v, attn_mask=mask)
                assert torch.get_num_threads() == 2
                out.backward(g)
                assert torch.get_num_threads() == 2
                return out.detach(), q.grad, k.grad, v.grad

            for got, want in zip(run(attention), run(F.scaled_dot_product_attention)):
                assert torch.equal(got, want), (B, H, T, D, masked)
            with torch.no_grad():  # evaluation: no graph
                assert torch.equal(attention(*qkv, attn_mask=mask), F.scaled_dot_product_attention(*qkv, attn_mask=mask))
            assert torch.get_num_threads() == 2
        # only some inputs need gradients (a frozen query)
        q = qkv[0][:, :, :2]
        k, v = (t[:, :, :2].clone().requires_grad_(True) for t in qkv[1:])
        attention(q, k, v).sum().backward()
        assert q.grad is None and k.grad is not None and v.grad is not None
    finally:
        torch.set_num_threads(before)
