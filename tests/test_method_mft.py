"""MFT: losses on hand-made cases, switches, learning on the synthetic benchmark, determinism, ablations."""

import math

import pytest
import torch
import torch.nn.functional as F

from avbench.data.synthetic import synthetic_benchmark
from avbench.errors import ConfigError
from avbench.methods.base import Batch, Dims
from avbench.methods.mft import MFT, cosine_loss, kl_loss, target_distribution
from avbench.protocol.config import resolve_config
from avbench.protocol.metrics import beta_grid
from avbench.protocol.run import run_protocol
from avbench.protocol.trainer import EvalSet, TrainSet, train

from conftest import SMALL

SIZES = {"hidden_encoder": 64, "model_dim": 64, "mlp_dim": 128, "proj_dim": 64, "hidden_text": 64}
BUDGET = {"epochs": 3, "batches_per_epoch": 20, "batch_size": 64, "lr": 1e-3, **SIZES}


def test_target_distribution_and_kl_on_a_hand_made_case():
    text = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    q = target_distribution(text, 0.1, "uniform", 0.1)
    assert torch.allclose(q[0], torch.tensor([0.9, 0.05, 0.05]))
    q = target_distribution(text, 0.2, "semantic", 1.0)
    # class 0: cos to class 1 is 1/√2, to class 2 is 0 -> the smoothing mass goes mostly to class 1
    e = math.exp(1 / math.sqrt(2))
    assert torch.allclose(q[0], torch.tensor([0.8, 0.2 * e / (e + 1), 0.2 / (e + 1)]))
    assert torch.allclose(q.sum(1), torch.ones(3))
    assert torch.equal(target_distribution(text, 0.0, "semantic", 0.1), torch.eye(3))
    # with a one-hot target the KL term is cross entropy; otherwise it is CE to q minus q's entropy
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    label = torch.tensor([0, 1])
    assert kl_loss(logits, torch.eye(3)[label]).item() == pytest.approx(F.cross_entropy(logits, label).item())
    qq = q[label]
    expected = (-(qq * logits.log_softmax(1)).sum(1) + (qq * qq.log()).sum(1)).mean()
    assert kl_loss(logits, qq).item() == pytest.approx(expected.item())


def test_cosine_loss_on_a_hand_made_case():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    label = torch.tensor([0, 0, 1])
    cls = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    r = 1 / math.sqrt(2)
    # videos: same-class pair (0,1) cos 0 -> pull 1; different-class pairs (0,2),(1,2) cos r -> push r - 0.2
    # video-class: own cos 1, 0, r -> pull mean (0 + 1 + 1 - r)/3; others cos 0, 1, r -> push (0 + 0.8 + r - 0.2)/3
    expected = 1.0 + (r - 0.2) + (2 - r) / 3 + (0.6 + r) / 3
    assert cosine_loss(emb, label, cls, 0.2).item() == pytest.approx(expected)
    # collapsed embeddings are not a minimum: every different-class pair pays the push
    same = torch.ones(3, 2)
    assert cosine_loss(same, label, torch.ones(2, 2), 0.2).item() == pytest.approx(0.8 + 0.8)


def test_config_errors_and_modalities():
    config = resolve_config("mft", "ucf", "main", SIZES)
    dims = Dims(audio=5, video=7, text=4)
    for bad in ({"modality": "text"}, {"kl_target": "x"}, {"use_kl": False, "use_cosine": False}, {"heads": 3}):
        with pytest.raises(ConfigError):
            MFT(dims, {**config, **bad})
    torch.manual_seed(0)  # the inputs too: they must not depend on which tests ran before
    a, v, t = torch.randn(6, 5), torch.randn(6, 7), torch.randn(3, 4)
    m = MFT(dims, {**config, "modality": "audio"}).eval()
    assert not hasattr(m, "V_enc") and m.distances(a, v, t).shape == (6, 3)
    # the audio-only model ignores the video features
    assert torch.equal(m.distances(a, v, t), m.distances(a, torch.randn(6, 7), t))
    m = MFT(dims, {**config, "modality": "video"}).eval()
    assert not hasattr(m, "A_enc") and torch.equal(m.distances(a, v, t), m.distances(torch.randn(6, 5), v, t))
    # prediction = negated scaled cosine of the fused embedding and the projected class embedding
    m = MFT(dims, config).eval()
    cos = F.normalize(m.embed_av(a, v), dim=1) @ F.normalize(m.W_proj(t), dim=1).T
    # float32 tolerances with an absolute floor: a cosine near 0 must not fail on rounding
    torch.testing.assert_close(m.distances(a, v, t), -cos / config["temperature"])


def test_mft_learns_and_is_deterministic():
    a = run_protocol(synthetic_benchmark(SMALL), "mft", seed=3, overrides=BUDGET)
    b = run_protocol(synthetic_benchmark(SMALL), "mft", seed=3, overrides=BUDGET)
    assert a.ZSL > 3 / SMALL.n_test_unseen and a.HM > 0  # 3 x ZSL chance
    assert (a.S, a.U, a.HM, a.ZSL) == (b.S, b.U, b.HM, b.ZSL)


def _trained(overrides: dict):
    """Parameters, last training loss and validation metrics after a short stage-1 training."""
    bench = synthetic_benchmark(SMALL)
    config = resolve_config("mft", "synthetic", "main", {**BUDGET, "epochs": 1, "batches_per_epoch": 10, **overrides})
    emb = bench.embeddings("by-name")
    tr = TrainSet.build(bench.split("stage_1_train"), emb, torch.device("cpu"))
    val = EvalSet.build(bench.split("stage_1_val_seen"), bench.split("stage_1_val_unseen"), tr.classes, emb, "cpu")
    torch.manual_seed(0)
    model = MFT(Dims(bench.audio_dim, bench.video_dim, bench.text_dim), config)
    hist = train(model, tr, epochs=1, batches_per_epoch=10, batch_size=64, seed=0, val=val, betas=beta_grid(3.0, 16))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, hist[-1]


@pytest.fixture(scope="module")
def reference():
    return _trained({})


@pytest.mark.parametrize(
    "switch",
    [
        {"use_attention": False},
        {"use_kl": False},
        {"use_cosine": False},
        {"kl_weight": 0.3},
        {"kl_target": "uniform"},
        {"modality": "audio"},
        {"modality": "video"},
    ],
)
def test_each_ablation_switch_changes_the_trained_model(reference, switch):
    ref_params, ref = reference
    params, rec = _trained(switch)
    # the shared parameters (the text projection exists in every variant) end elsewhere,
    # and so do the training loss and the validation metrics
    assert not torch.allclose(ref_params["W_proj.0.weight"], params["W_proj.0.weight"])
    assert rec.loss != ref.loss
    assert rec.val != ref.val


def test_published_defaults_and_a_training_step():
    # ucf defaults (lr 7e-5, batch 64, 300 batches, 20 epochs) resolve and one step runs
    config = resolve_config("mft", "ucf", "main")
    assert (config["batch_size"], config["batches_per_epoch"], config["epochs"], config["lr"]) == (64, 300, 20, 7e-5)
    assert resolve_config("mft", "vggsound", "cls")["epochs"] == 15
    torch.manual_seed(0)
    m = MFT(Dims(audio=12, video=10, text=8), config)
    b = Batch(
        audio=torch.randn(8, 12), video=torch.randn(8, 10), label=torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]),
        neg_audio=torch.randn(8, 12), neg_video=torch.randn(8, 10), neg_label=torch.tensor([1, 2, 0, 1, 2, 0, 1, 2]),
        text=torch.randn(3, 8),
    )
    loss, parts = m.loss(b)
    loss.backward()
    assert set(parts) == {"l_kl", "l_cos"} and torch.isfinite(loss)
    assert all(p.grad is not None for p in m.parameters())


def test_switches_select_the_losses_and_the_fusion():
    config = resolve_config("mft", "ucf", "main", {**SIZES, "dropout": 0.0, "dropout_fusion": 0.0})
    dims = Dims(audio=6, video=5, text=4)
    b = Batch(
        audio=torch.randn(6, 6), video=torch.randn(6, 5), label=torch.tensor([0, 1, 0, 1, 2, 2]),
        neg_audio=torch.randn(6, 6), neg_video=torch.randn(6, 5), neg_label=torch.tensor([1, 0, 1, 0, 0, 1]),
        text=torch.randn(3, 4),
    )
    torch.manual_seed(0)
    full_loss, full = MFT(dims, config).loss(b)
    torch.manual_seed(0)
    _, no_kl = MFT(dims, {**config, "use_kl": False}).loss(b)
    torch.manual_seed(0)
    half_loss, _ = MFT(dims, {**config, "kl_weight": 0.5, "cos_weight": 0.5}).loss(b)
    assert set(full) == {"l_kl", "l_cos"} and set(no_kl) == {"l_cos"}
    torch.manual_seed(0)
    assert set(MFT(dims, {**config, "use_cosine": False}).loss(b)[1]) == {"l_kl"}
    # same init, no dropout: the weights scale the terms as written
    assert half_loss.item() == pytest.approx(0.5 * full_loss.item(), rel=1e-5)
    no_att = MFT(dims, {**config, "use_attention": False})
    assert not any("qkv" in n for n, _ in no_att.named_parameters())
    assert any("qkv" in n for n, _ in MFT(dims, config).named_parameters())
