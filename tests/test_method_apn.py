"""APN: learns on the small synthetic benchmark, is deterministic, loss and prediction as specified."""

import torch
import torch.nn.functional as F

from avbench.data.synthetic import synthetic_benchmark
from avbench.methods import get_method
from avbench.methods.base import Batch, Dims
from avbench.protocol.config import resolve_config
from avbench.protocol.run import run_protocol

from conftest import SMALL

BUDGET = {"epochs": 3, "batches_per_epoch": 15, "batch_size": 64}


def test_apn_learns_and_is_deterministic():
    a = run_protocol(synthetic_benchmark(SMALL), "apn", seed=0, overrides=BUDGET)
    b = run_protocol(synthetic_benchmark(SMALL), "apn", seed=0, overrides=BUDGET)
    assert a.ZSL > 3 / SMALL.n_test_unseen and a.HM > 0.1  # 3 x ZSL chance
    assert (a.S, a.U, a.HM, a.ZSL) == (b.S, b.U, b.HM, b.ZSL)


def test_apn_defaults_follow_the_run_scripts():
    assert resolve_config("apn", "ucf", "main")["norm_inputs"] is False
    for ds in ("ucf", "activitynet", "vggsound"):
        cfg = resolve_config("apn", ds, "cls")
        assert cfg["norm_inputs"] is True and cfg["lr"] == 1e-3 and cfg["batch_size"] == 256


def _model(**over):
    torch.manual_seed(0)
    cfg = {**resolve_config("apn", "ucf", "main"), **over}
    return get_method("apn")(Dims(audio=3, video=2, text=4), cfg)


def test_apn_loss_on_a_hand_made_case():
    m = _model()
    audio, video = torch.randn(5, 3), torch.randn(5, 2)
    text, label = torch.randn(3, 4), torch.tensor([0, 2, 1, 1, 0])
    batch = Batch(audio, video, label, audio, video, label, text)
    x = torch.cat([video, audio], 1)  # video first, as the reference
    expected = 0.0
    for W in (m.W_ale, m.prototypes):
        attr = x @ W.T
        expected = expected + F.cross_entropy((attr @ text.T).softmax(1), label) + ((attr - text[label]) ** 2).mean()
    total, parts = m.loss(batch)
    assert torch.allclose(total, expected, atol=1e-6) and set(parts) == {"l_xe", "l_attr"}
    # textbook CE on the scores
    m2 = _model(double_softmax=False)
    expected2 = sum(
        F.cross_entropy(x @ W.T @ text.T, label) + ((x @ W.T - text[label]) ** 2).mean() for W in (m2.W_ale, m2.prototypes)
    )
    assert torch.allclose(m2.loss(batch)[0], expected2, atol=1e-6)


def test_apn_predicts_with_the_ale_head_only():
    m = _model(norm_inputs=True)
    audio, video, text = torch.randn(6, 3), torch.randn(6, 2), torch.randn(5, 4)
    d = m.distances(audio, video, text)
    x = F.normalize(torch.cat([video, audio], 1), dim=1)
    assert torch.allclose(d, torch.cdist(x @ m.W_ale.T, text), atol=1e-6)
    with torch.no_grad():
        m.prototypes.mul_(-3.0)
    assert torch.equal(m.distances(audio, video, text), d)
