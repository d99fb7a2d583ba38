import pytest
import torch

from avbench.data.synthetic import synthetic_benchmark
from avbench.methods.sje import sje_loss
from avbench.protocol.run import run_protocol

from conftest import SMALL

BUDGET = {"epochs": 3, "batches_per_epoch": 20, "batch_size": 64}


def test_sje_loss_on_a_hand_made_case():
    scores = torch.tensor([[1.0, 0.95, 0.5, 0.98], [0.0, 0.0, 2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    label = torch.tensor([0, 2])
    loss = sje_loss(scores, label, 0.1)
    # row 0: largest violation 0.08 (class 3); row 1: none
    assert loss.item() == pytest.approx(0.08 / 2)
    loss.backward()  # only the true class and the most violating one get a gradient
    expected = torch.tensor([[-0.5, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(scores.grad, expected)


def test_sje_learns_and_is_deterministic():
    a = run_protocol(synthetic_benchmark(SMALL), "sje", seed=5, overrides=BUDGET)
    b = run_protocol(synthetic_benchmark(SMALL), "sje", seed=5, overrides=BUDGET)
    assert a.ZSL > 3 / SMALL.n_test_unseen and a.HM > 0  # 3 x ZSL chance
    assert (a.S, a.U, a.HM, a.ZSL) == (b.S, b.U, b.HM, b.ZSL)
