import pytest
import torch

from avbench.data.synthetic import synthetic_benchmark
from avbench.methods.ale import ALE, ale_loss
from avbench.methods.base import Dims
from avbench.protocol.config import resolve_config
from avbench.protocol.run import run_protocol

from conftest import SMALL

BUDGET = {"epochs": 3, "batches_per_epoch": 20, "batch_size": 64}


def _reference_ale(scores, label, margin):
    """The rank-weighted hinge written out one video at a time."""
    total = 0.0
    for s, y in zip(scores.tolist(), label.tolist()):
        viol = [max(0.0, margin + s[c] - s[y]) for c in range(len(s)) if c != y]
        r = sum(v > 0 for v in viol)
        weight = sum(1.0 / k for k in range(1, r + 1)) / r if r else 0.0
        total += weight * sum(viol)
    return total / len(label)


def test_ale_loss_on_a_hand_made_case():
    scores = torch.tensor([[1.0, 0.95, 0.5, 0.98], [0.0, 0.0, 2.0, 0.0]], dtype=torch.float64)
    label = torch.tensor([0, 2])
    # row 0: violations 0.05 and 0.08 (rank 2, weight H(2)/2 = 0.75); row 1: none
    assert ale_loss(scores, label, 0.1).item() == pytest.approx(0.75 * 0.13 / 2)
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(16, 30, generator=g, dtype=torch.float64) * 0.1
    label = torch.randint(30, (16,), generator=g)
    assert ale_loss(scores, label, 0.1).item() == pytest.approx(_reference_ale(scores, label, 0.1))


def test_ale_per_dataset_defaults():
    assert resolve_config("ale", "ucf", "main")["dropout"] == 0.2
    assert resolve_config("ale", "activitynet", "cls")["norm_inputs"] is True
    vgg = resolve_config("ale", "vggsound", "main")
    assert vgg["dropout"] == 0.0 and vgg["norm_inputs"] is False and vgg["margin"] == 0.1


def test_ale_norm_inputs_ignores_the_feature_scale():
    torch.manual_seed(0)
    m = ALE(Dims(audio=5, video=7, text=4), resolve_config("ale", "ucf", "cls")).eval()
    a, v, t = torch.randn(3, 5), torch.randn(3, 7), torch.randn(6, 4)
    assert torch.allclose(m.distances(a, v, t), m.distances(3 * a, 3 * v, t), atol=1e-5)


def test_ale_learns_and_is_deterministic():
    a = run_protocol(synthetic_benchmark(SMALL), "ale", seed=5, overrides=BUDGET)
    b = run_protocol(synthetic_benchmark(SMALL), "ale", seed=5, overrides=BUDGET)
    assert a.ZSL > 3 / SMALL.n_test_unseen and a.HM > 0  # 3 x ZSL chance
    assert (a.S, a.U, a.HM, a.ZSL) == (b.S, b.U, b.HM, b.ZSL)
