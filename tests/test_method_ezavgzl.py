"""EZ-AVGZL: learns on the small synthetic benchmark, is deterministic, every switch matters,
and the class-embedding optimisation separates classes while keeping their similarity structure."""

import numpy as np
import torch
import torch.nn.functional as F

from avbench.data.synthetic import generate, synthetic_benchmark
from avbench.methods import get_method
from avbench.methods.base import Batch, Dims
from avbench.methods.ezavgzl import avla_loss, off_diagonal, separation_loss, structure_loss
from avbench.protocol.config import resolve_config
from avbench.protocol.run import run_protocol
from avbench.protocol.trainer import TrainSet, train

from conftest import SMALL

BUDGET = {"epochs": 3, "batches_per_epoch": 15, "batch_size": 64, "dim": 64, "mlp_dim": 128, "ceo_hidden": 128,
          "ceo_steps": 100, "hidden_concat": 128}


def test_ezavgzl_learns_and_is_deterministic():
    a = run_protocol(synthetic_benchmark(SMALL), "ez-avgzl", seed=0, overrides=BUDGET)
    b = run_protocol(synthetic_benchmark(SMALL), "ez-avgzl", seed=0, overrides=BUDGET)
    assert a.ZSL > 3 / SMALL.n_test_unseen and a.HM > 0.1  # 3 x ZSL chance
    assert (a.S, a.U, a.HM, a.ZSL) == (b.S, b.U, b.HM, b.ZSL)


def _trained_distances(**switches) -> torch.Tensor:
    """Distances of a briefly trained model (stage-1 training set) on a fixed set of videos."""
    bench = synthetic_benchmark(SMALL)
    config = resolve_config("ez-avgzl", "synthetic", "main", {**BUDGET, "epochs": 1, "batches_per_epoch": 5, **switches})
    train_set = TrainSet.build(bench.split("stage_1_train"), bench.embeddings("by-name"), torch.device("cpu"))
    torch.manual_seed(0)
    model = get_method("ez-avgzl")(Dims(bench.audio_dim, bench.video_dim, bench.text_dim), config)
    train(model, train_set, epochs=1, batches_per_epoch=5, batch_size=64, seed=0, lr_schedule=[1e-3])
    model.eval()
    with torch.no_grad():
        return model.distances(train_set.audio[:50], train_set.video[:50], torch.as_tensor(bench.embeddings("by-name")))


def test_every_ablation_switch_changes_the_trained_model():
    base = _trained_distances()
    assert torch.equal(base, _trained_distances())  # same seed, same model
    for switch in ({"optimise_embeddings": False}, {"use_cross_attention": False}, {"symmetric_loss": False},
                   {"temperature": 0.05}, {"structure_weight": 0.1}):
        assert not torch.allclose(base, _trained_distances(**switch), atol=1e-4), switch


def test_without_optimisation_the_targets_are_the_normalised_embeddings():
    cfg = {**resolve_config("ez-avgzl", "ucf", "main"), "optimise_embeddings": False}
    torch.manual_seed(0)
    m = get_method("ez-avgzl")(Dims(5, 3, 6), cfg)
    t = torch.randn(4, 6)
    assert torch.allclose(m.class_embeddings(t), F.normalize(t, dim=1))
    # and the map starts as the identity on the sphere when switched on
    m2 = get_method("ez-avgzl")(Dims(5, 3, 6), resolve_config("ez-avgzl", "ucf", "main"))
    assert torch.allclose(m2.class_embeddings(t), F.normalize(t, dim=1), atol=1e-6)


def _rank_corr(x: torch.Tensor, y: torch.Tensor) -> float:
    rx, ry = x.argsort().argsort().double(), y.argsort().argsort().double()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()))


def _pairs(e: torch.Tensor) -> torch.Tensor:
    i, j = torch.triu_indices(len(e), len(e), 1)
    return (e @ e.T)[i, j]


def test_embedding_optimisation_separates_classes_and_keeps_their_structure():
    emb = torch.as_tensor(generate(SMALL)["embeddings"])
    # word vectors share a common direction (high mean cosine): add one, as in fastText
    emb = F.normalize(emb + 0.05 * torch.ones(emb.shape[1]), dim=1)
    train_cls = emb[:30]  # the map is fitted on these only; rows 30: are held-out classes
    torch.manual_seed(0)
    m = get_method("ez-avgzl")(Dims(5, 3, emb.shape[1]), resolve_config("ez-avgzl", "ucf", "main", {"ceo_steps": 200}))
    m.optimise_class_embeddings(train_cls)
    (sep0, struct0), (sep1, struct1) = m.ceo_history
    assert sep1 < sep0 and struct0 < 1e-6 and struct1 < 0.05
    with torch.no_grad():
        t, g = F.normalize(emb, dim=1), m.class_embeddings(emb)
    for name, rows in (("training classes", slice(0, 30)), ("held-out classes", slice(30, None))):
        before, after = _pairs(t[rows]), _pairs(g[rows])
        # more separable: lower mean and lower nearest-neighbour similarity
        assert after.mean() < before.mean() - 0.05, name
        nn_before = off_diagonal(t[rows] @ t[rows].T).max(1).values.mean()
        nn_after = off_diagonal(g[rows] @ g[rows].T).max(1).values.mean()
        assert nn_after < nn_before - 0.1, name
    # the semantic similarity structure is kept (rank correlation of all pairwise similarities)
    assert _rank_corr(_pairs(t[:30]), _pairs(g[:30])) > 0.9
    assert _rank_corr(_pairs(t), _pairs(g)) > 0.8  # also with held-out classes the map never saw


def test_ceo_losses_on_a_hand_made_case():
    # four unit vectors in the plane at 0°, 30°, 90° and 180°
    ang = torch.tensor([0.0, 30.0, 90.0, 180.0]).deg2rad()
    t = torch.stack((ang.cos(), ang.sin()), dim=1)
    tau = 0.1
    sim = (t @ t.T).double()
    expected = np.mean([tau * torch.logsumexp(sim[i, [j for j in range(4) if j != i]] / tau, 0).item()
                        for i in range(4)])
    assert abs(float(separation_loss(t, tau)) - expected) < 1e-5
    assert float(structure_loss(t, t)) < 1e-6
    # 0° and 180° swapped: every class's profile changes, class 1's (30°) is reversed in part
    assert float(structure_loss(t[[3, 1, 2, 0]], t)) > 0.3
    # a class equally similar to all others (here: the origin's 3 neighbours on a regular simplex) is left out
    tri = torch.tensor([[1.0, 0.0], [-0.5, 3**0.5 / 2], [-0.5, -(3**0.5) / 2]])
    assert float(structure_loss(tri, tri)) == 0.0


def test_avla_loss_on_a_hand_made_case():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.0, 0.0], [1.0, 1.0, 3.0], [0.0, 2.0, 0.0]])
    label = torch.tensor([0, 1, 2, 1])
    p_row = torch.softmax(logits, 1)[torch.arange(4), label]
    p_col = torch.softmax(logits, 0)[torch.arange(4), label]
    row = -p_row.log().mean()
    assert torch.allclose(avla_loss(logits, label, symmetric=False), row)
    assert torch.allclose(avla_loss(logits, label, symmetric=True), 0.5 * (row - p_col.log().mean()))


def test_loss_uses_only_the_training_classes_and_distances_are_negated_logits():
    torch.manual_seed(0)
    cfg = {**resolve_config("ez-avgzl", "ucf", "main"), "dim": 8, "heads": 2, "tokens": 2, "mlp_dim": 8}
    m = get_method("ez-avgzl")(Dims(5, 3, 6), cfg).eval()
    g = torch.Generator().manual_seed(1)
    audio, video, text = torch.randn(8, 5, generator=g), torch.randn(8, 3, generator=g), torch.randn(4, 6, generator=g)
    label = torch.arange(8) % 4
    total, parts = m.loss(Batch(audio, video, label, audio, video, label, text))
    with torch.no_grad():
        z = F.normalize(m.encoder(audio, video), dim=1)
        s = z @ F.normalize(text, dim=1).T / m.tau  # the map is the identity before optimisation
        assert torch.allclose(total, avla_loss(s, label, True), atol=1e-5)
        assert torch.allclose(m.distances(audio, video, text), -s, atol=1e-5)
    assert set(parts) == {"l_avla"}
