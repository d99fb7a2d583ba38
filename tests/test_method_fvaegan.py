"""f-VAEGAN-D2: learns on the synthetic benchmark, deterministic, losses, optimisers, classifier."""

import math

import pytest
import torch

from avbench.data.synthetic import synthetic_benchmark
from avbench.methods import get_method
from avbench.methods.base import Batch, Dims, TrainData
from avbench.methods.fvaegan import gradient_penalty, vae_loss
from avbench.protocol.config import resolve_config
from avbench.protocol.run import run_protocol

from conftest import SMALL

# a budget that trains in a few seconds: small nets, a generator step every batch, a
# lighter GAN term (the reference's 1e5 needs hundreds of batches), a small classifier
FAST = {
    "epochs": 3, "batches_per_epoch": 30, "batch_size": 64, "lr": 3e-3,
    "latent_size": 32, "encoder_hidden": 64, "decoder_hidden": 128, "critic_hidden": 128,
    "critic_iter": 1, "gan_weight": 10.0,
    "syn_num": 50, "clf_epochs": 10, "clf_lr": 1e-2, "clf_batch_size": 256,
}


@pytest.fixture
def one_thread():
    """The models here are tiny: one intra-op thread is faster, and on a busy 2-core machine
    two OpenMP threads per small op wait on each other (10x slower); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_learns_and_same_seed_same_metrics(one_thread):
    a = run_protocol(synthetic_benchmark(SMALL), "f-vaegan-d2", seed=5, overrides=FAST)
    b = run_protocol(synthetic_benchmark(SMALL), "f-vaegan-d2", seed=5, overrides=FAST)
    assert (a.S, a.U, a.HM, a.ZSL, a.beta) == (b.S, b.U, b.HM, b.ZSL, b.beta)
    assert a.ZSL > 3 / SMALL.n_test_unseen and a.HM > 0  # 3 x ZSL chance


def test_defaults_follow_the_run_scripts():
    ucf = resolve_config("f-vaegan-d2", "ucf", "main")
    vgg = resolve_config("f-vaegan-d2", "vggsound", "main")
    assert (ucf["latent_size"], ucf["syn_num"], vgg["syn_num"]) == (300, 1000, 10000)
    assert (ucf["epochs"], ucf["batches_per_epoch"], ucf["batch_size"], ucf["lr"]) == (50, 500, 64, 1e-3)
    assert ucf["d2_weight"] == 0.0  # the reference's generator loss never uses D2


def test_gradient_penalty_of_a_linear_critic():
    w = torch.tensor([3.0, 4.0])  # ‖∇‖ = 5 everywhere: penalty = λ (5 - 1)²
    critic = lambda x: x @ w[:, None] + 1.0  # noqa: E731
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    assert gradient_penalty(critic, real, fake, None, weight=10.0).item() == pytest.approx(160.0)


def test_vae_loss_by_hand():
    x = torch.tensor([[0.0, 1.0, 0.3], [0.5, 0.2, 0.9]])
    zeros = torch.zeros(2, 4)
    # σ(0) = 1/2: BCE is log 2 per entry whatever the target; N(0, 1) has no KL
    assert vae_loss(torch.zeros(2, 3), x, zeros, zeros).item() == pytest.approx(6 * math.log(2))
    # μ = 1, σ = 1: KL = ½ μ² per latent dimension
    assert vae_loss(torch.zeros(2, 3), x, zeros + 1, zeros).item() == pytest.approx(6 * math.log(2) + 4.0)


def _tiny(**cfg):
    dims = Dims(audio=5, video=4, text=6)
    config = {**resolve_config("f-vaegan-d2", "ucf", "main"), "latent_size": 3, "encoder_hidden": 8,
              "decoder_hidden": 8, "critic_hidden": 8, **cfg}
    torch.manual_seed(0)
    return get_method("f-vaegan-d2")(dims, config), dims


def _batch(dims, n_classes=3, B=8):
    g = torch.Generator().manual_seed(1)
    label = torch.arange(B) % n_classes
    a, v = torch.rand(B, dims.audio, generator=g), torch.rand(B, dims.video, generator=g)
    text = torch.nn.functional.normalize(torch.randn(n_classes, dims.text, generator=g), dim=1)
    return Batch(a, v, label, a.roll(1, 0), v.roll(1, 0), label.roll(1), text, None)


@pytest.mark.parametrize("d2_weight", [0.0, 1.0])
def test_critics_step_every_batch_generator_every_critic_iter(d2_weight):
    m, dims = _tiny(critic_iter=3, d2_weight=d2_weight)
    assert (m.D2 is not None) == (d2_weight > 0)
    opt = m.optimizer()
    gen_params = list(m.E.parameters()) + list(m.G.parameters())
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in gen_params}
    batch = _batch(dims)
    for step in range(4):
        g_before = [p.detach().clone() for p in gen_params]
        d_before = [p.detach().clone() for c in m.critics() for p in c.parameters()]
        loss, parts = m.loss(batch)  # what the protocol's trainer does
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        g_moved = any(not torch.equal(p, q) for p, q in zip(gen_params, g_before))
        d_moved = any(not torch.equal(p, q) for p, q in zip((p for c in m.critics() for p in c.parameters()), d_before))
        assert d_moved and "wasserstein" in parts
        assert g_moved == (step % 3 == 0), step  # batches 0 and 3 are generator steps
    for group in opt.param_groups:  # the protocol's schedule reaches the critics too
        group["lr"] = 1e-5
    m.loss(batch)
    assert m._opt_d.param_groups[0]["lr"] == 1e-5


def test_classifier_covers_the_search_space_only():
    m, dims = _tiny(syn_num=20, clf_epochs=2, clf_batch_size=16)
    batch = _batch(dims, n_classes=3, B=12)
    m.setup(TrainData(batch.audio, batch.video, batch.label, batch.text))
    g = torch.Generator().manual_seed(2)
    unseen_text = torch.nn.functional.normalize(torch.randn(2, dims.text, generator=g), dim=1)
    # search space: training classes 2 and 0 (class 1 absent) and two unseen classes, shuffled
    text = torch.stack([unseen_text[0], batch.text[2], unseen_text[1], batch.text[0]])
    seen = torch.tensor([False, True, False, True])
    m.eval()
    m.prepare_eval(text, seen)
    W, _ = m._clf
    assert W.shape == (4, dims.audio + dims.video)
    d = m.distances(batch.audio, batch.video, text)
    assert d.shape == (12, 4) and torch.allclose(torch.exp(-d).sum(1), torch.ones(12))
    m.prepare_eval(text, seen)  # same model, same space: the cached classifier
    assert m._clf[0] is W
    with pytest.raises(RuntimeError, match="not training classes"):
        m.prepare_eval(text, torch.tensor([True, True, False, True]))
