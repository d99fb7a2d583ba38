"""Metrics on small hand-computed cases (FIELD_NOTES §2)."""

import torch

from avbench.protocol.metrics import beta_grid, evaluate_gzsl, harmonic_mean, per_class_accuracy, stacked_predictions

# classes 0, 1 seen; 2, 3 unseen. Five videos: A, E (class 0), B (1), C (2), D (3).
D = torch.tensor(
    [
        [1.0, 2.0, 1.5, 3.0],  # A, class 0: right at β=0, lost to class 2 at β=1
        [2.0, 1.0, 3.0, 3.0],  # E, class 0: always predicted 1
        [2.0, 0.5, 3.0, 3.0],  # B, class 1: always right
        [0.8, 2.0, 1.2, 2.5],  # C, class 2: seen class 0 wins at β=0, right at β=1
        [3.0, 0.9, 2.0, 1.0],  # D, class 3: seen class 1 wins at β=0, right at β=1
    ]
)
LABELS = torch.tensor([0, 0, 1, 2, 3])
SEEN_VIDEO = torch.tensor([True, True, True, False, False])


def _eval(betas):
    return evaluate_gzsl(
        D, LABELS, torch.arange(4), torch.tensor([0, 1]), torch.tensor([2, 3]), SEEN_VIDEO, betas
    )


def test_beta_changes_gzsl_but_not_zsl():
    r = _eval(torch.tensor([0.0, 1.0], dtype=torch.float64))
    # β=0: class 0 gets 1 of 2 right, class 1 1 of 1 -> S = (0.5 + 1) / 2 (per-class mean, not 2/3 per video)
    assert r.S.tolist() == [0.75, 0.5]
    assert r.U.tolist() == [0.0, 1.0]
    assert abs(float(r.HM[1]) - 2 * 0.5 * 1.0 / 1.5) < 1e-12
    assert float(r.HM[0]) == 0.0
    assert r.best == 1
    assert r.ZSL == 1.0  # unseen-only search: C -> 2, D -> 3, whatever β


def test_best_beta_prefers_smallest_on_ties():
    r = _eval(torch.tensor([1.0, 1.1, 1.2], dtype=torch.float64))
    assert r.HM[0] == r.HM[1] == r.HM[2]
    assert r.best == 0


def test_per_class_accuracy_is_mean_over_classes():
    pred = torch.tensor([[0, 1, 1, 1]])
    target = torch.tensor([0, 0, 0, 1])
    # class 0: 1/3, class 1: 1/1 -> 2/3 (per video it would be 2/4)
    assert abs(float(per_class_accuracy(pred, target, torch.tensor([0, 1]))[0]) - 2 / 3) < 1e-12


def test_harmonic_mean_epsilon():
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert abs(harmonic_mean(0.5, 1.0) - 2 / 3) < 1e-12


def test_stacked_predictions_match_brute_force_with_ties():
    g = torch.Generator().manual_seed(0)
    betas = beta_grid(3.0, 16).float()
    for _ in range(50):
        d = torch.randint(0, 6, (40, 9), generator=g).float() / 5  # many exact ties
        seen = torch.rand(9, generator=g) < 0.5
        brute = (d[None] + betas[:, None, None] * seen[None, None].float()).argmin(-1)
        assert torch.equal(stacked_predictions(d, seen, betas), brute)


def test_beta_grids_of_the_presets():
    assert torch.allclose(beta_grid(3.0, 16), torch.arange(16, dtype=torch.float64) * 0.2)
    g = beta_grid(5.0, 76)
    assert len(g) == 76 and float(g[0]) == 0.0 and float(g[-1]) == 5.0
    # bit for bit the codes' float32 torch.linspace grids (a float64 grid rounded to float32
    # is one ulp off in 27 of ClipClap's 76 values)
    assert torch.equal(g.float(), torch.linspace(0, 5, 76)) and torch.equal(beta_grid(3.0, 16).float(), torch.linspace(0, 3, 16))
