import pytest
import torch

from avbench.data.synthetic import synthetic_benchmark
from avbench.errors import ConfigError
from avbench.methods.base import Dims
from avbench.methods.devise import DeViSE, devise_loss
from avbench.protocol.config import resolve_config
from avbench.protocol.run import run_protocol

from conftest import SMALL

BUDGET = {"epochs": 3, "batches_per_epoch": 20, "batch_size": 64}


def test_devise_loss_on_a_hand_made_case():
    scores = torch.tensor([[1.0, 0.95, 0.5, 0.98], [0.0, 0.0, 2.0, 0.0]], dtype=torch.float64)
    label = torch.tensor([0, 2])
    # row 0: violations 0.05 + 0.08; row 1: none
    assert devise_loss(scores, label, 0.1).item() == pytest.approx(0.13 / 2)


def test_devise_prediction_rules():
    torch.manual_seed(0)
    config = resolve_config("devise", "ucf", "main")
    m = DeViSE(Dims(audio=5, video=7, text=4), config).eval()
    a, v = torch.randn(3, 5), torch.randn(3, 7)
    t = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    p = m.W(torch.cat((v, a), dim=1))
    assert torch.allclose(m.distances(a, v, t), torch.cdist(p, t))
    # with unit-norm class embeddings both rules rank the classes identically
    m.config["prediction"] = "compatibility"
    assert torch.equal(m.distances(a, v, t).argsort(dim=1), torch.cdist(p, t).argsort(dim=1))
    with pytest.raises(ConfigError, match="prediction"):
        DeViSE(Dims(audio=5, video=7, text=4), {**config, "prediction": "cosine"})


def test_devise_learns_and_is_deterministic():
    a = run_protocol(synthetic_benchmark(SMALL), "devise", seed=5, overrides=BUDGET)
    b = run_protocol(synthetic_benchmark(SMALL), "devise", seed=5, overrides=BUDGET)
    assert a.ZSL > 3 / SMALL.n_test_unseen and a.HM > 0  # 3 x ZSL chance
    assert (a.S, a.U, a.HM, a.ZSL) == (b.S, b.U, b.HM, b.ZSL)
