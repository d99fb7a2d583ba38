"""The benchmark's metrics (FIELD_NOTES §2), with calibrated stacking over a β grid.

All functions take a *distance* matrix ``d`` of shape [N, K] between N videos and
the K classes of the search space (lower is closer); methods that produce
similarity scores hand the protocol ``-score``. ``seen`` is a bool mask over the K
columns. Calibrated stacking predicts ``argmin_k d[n, k] + β·seen[k]``.

The whole β grid is evaluated at once without materialising [B, N, K]: for every
video only the nearest seen class and the nearest unseen class can ever win, so
the prediction for each β is a comparison of two numbers. Ties go to the lower
column index, as ``argmin`` over the stacked matrix does. One case differs from the
codes' ``argmin`` over float32 ``d + β`` (AVCA-GZSL src/utils.py L279-281, the same in
TCAF and ClipClap): two *seen* distances that differ but round to the same float32
value once β is added tie there (the lower column wins), while here the nearer one
wins. It needs two seen distances within an ulp of the shifted value; 1.28 million
predictions on random distances (a review of the reference code) gave no such case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

EPS = float(np.finfo(np.float64).eps)


def beta_grid(stop: float, num: int) -> torch.Tensor:
    """``num`` evenly spaced β values from 0 to ``stop`` inclusive: the public codes' float32
    ``torch.linspace(0, stop, num)`` (AVCA-GZSL src/utils.py get_best_evaluation L221-225,
    ClipClap-GZSL src/utils.py L312-316), held in float64. A float64 grid rounded to
    float32 differs from it by one ulp in 27 of ClipClap's 76 values (e.g. its 0.2 is
    0.20000001788), which can flip a prediction on a float32 rounding boundary."""
    return torch.linspace(0.0, float(stop), int(num), dtype=torch.float32).to(torch.float64)


BETA_RULES = ("predictor", "mean")


def combine_betas(rule: str, betas: dict[str, float], predicts: str) -> float:
    """The β applied to the test split, from the β chosen on validation for each output.

    ``betas`` maps output names (see Method.named_distances) to the β that maximised
    that output's validation HM; ``predicts`` names the output that labels videos.

    - ``predictor`` (the platform's rule): the β of the predicting output.
    - ``mean``: the mean of every output's β, as the AVCA-GZSL evaluation does
      (src/test.py ``_get_test_performance``, L43-46: ``best_beta_combined =
      1/3 * (β_audio + β_video + β_both)``, set to 1e-10 when it is 0). The β's are
      taken as float32 first, as the codes' grids are float32 tensors. The zero guard
      exists because ``get_best_evaluation`` reads ``if best_beta`` and would score
      the whole grid on the test split for β = 0; TCAF-GZSL and ClipClap-GZSL write
      it as ``(β_a + β_v + β_b + 1e-10) / 3`` (src/test.py L44-45), i.e. β + 3.3e-11
      for their single output: in the float32 arithmetic both codes score in, that
      equals β for every non-zero grid β (ulp(1/15) ≈ 7.5e-9) and is, like 1e-10, a
      positive β below the resolution of any distance above ~1e-3, so the one form
      serves all three codes.
    """
    if rule not in BETA_RULES:
        raise ValueError(f"beta rule {rule!r}: expected one of {', '.join(BETA_RULES)}")
    if predicts not in betas:
        raise ValueError(f"beta rule: the predicting output {predicts!r} has no β (outputs: {', '.join(betas)})")
    if rule == "predictor":
        return float(betas[predicts])
    mean = sum(float(np.float32(b)) for b in betas.values()) / len(betas)
    return mean if mean != 0 else 1e-10


def harmonic_mean(s, u):
    return 2 * s * u / (s + u + EPS)


def stacked_predictions(d: torch.Tensor, seen: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """[B, N] column index predicted for each β: argmin_k d[n, k] + β·seen[k]."""
    seen = seen.to(device=d.device, dtype=torch.bool)
    big = torch.finfo(d.dtype).max
    d_s, i_s = torch.where(seen, d, big).min(dim=1)
    d_u, i_u = torch.where(~seen, d, big).min(dim=1)
    if not bool(seen.any()):
        return i_u.expand(len(betas), -1)
    if bool(seen.all()):
        return i_s.expand(len(betas), -1)
    b = betas.to(device=d.device, dtype=d.dtype)[:, None]
    shifted = d_s[None, :] + b  # same float arithmetic as d + β·1(seen)
    seen_wins = (shifted < d_u[None, :]) | ((shifted == d_u[None, :]) & (i_s < i_u)[None, :])
    return torch.where(seen_wins, i_s[None, :], i_u[None, :])


def per_class_accuracy(pred: torch.Tensor, target: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Mean over ``classes`` of per-class accuracy, for each row of ``pred`` [B, N].

    ``target`` [N] and ``pred`` hold class ids; a class in ``classes`` with no video
    is an error of the caller (it would divide by zero).
    """
    pred = pred.reshape(-1, pred.shape[-1])
    lookup = torch.full((int(max(int(target.max()), int(classes.max()))) + 1,), -1, dtype=torch.long, device=target.device)
    lookup[classes] = torch.arange(len(classes), device=target.device)
    slot = lookup[target]
    keep = slot >= 0
    slot, tgt, p = slot[keep], target[keep], pred[:, keep]
    counts = torch.bincount(slot, minlength=len(classes)).to(torch.float64)
    if bool((counts == 0).any()):
        raise ValueError("per_class_accuracy: a class in `classes` has no video")
    correct = (p == tgt[None, :]).to(torch.float64)
    sums = torch.zeros(p.shape[0], len(classes), dtype=torch.float64, device=target.device)
    sums.index_add_(1, slot, correct)
    return (sums / counts[None, :]).mean(dim=1)


@dataclass
class GZSLResult:
    """Metrics (fractions in [0, 1]) for every β of the grid, and the chosen one."""

    betas: torch.Tensor  # [B]
    S: torch.Tensor  # [B]
    U: torch.Tensor  # [B]
    HM: torch.Tensor  # [B]
    ZSL: float

    @property
    def best(self) -> int:
        """Index of the β with the highest HM (the smallest such β on ties)."""
        return int(torch.argmax(self.HM))

    def at(self, i: int) -> dict:
        return {
            "beta": float(self.betas[i]),
            "S": float(self.S[i]),
            "U": float(self.U[i]),
            "HM": float(self.HM[i]),
            "ZSL": float(self.ZSL),
        }


def evaluate_gzsl(
    d: torch.Tensor,
    labels: torch.Tensor,
    search_classes: torch.Tensor,
    seen_classes: torch.Tensor,
    unseen_classes: torch.Tensor,
    is_seen_video: torch.Tensor,
    betas: torch.Tensor,
) -> GZSLResult:
    """S, U, HM for every β and ZSL, exactly per the benchmark's definitions.

    d:              [N, K] distances to the classes ``search_classes`` (class ids)
    labels:         [N] class id of each video
    seen_classes:   class ids that count as seen (calibrated stacking penalises them)
    unseen_classes: class ids of the unseen part of the search space
    is_seen_video:  [N] bool, video belongs to the seen split (S) or the unseen one (U)
    """
    device = d.device
    search_classes = search_classes.to(device)
    labels = labels.to(device)
    seen_col = torch.isin(search_classes, seen_classes.to(device))
    unseen_col = torch.isin(search_classes, unseen_classes.to(device))
    pred = search_classes[stacked_predictions(d, seen_col, betas)]  # [B, N] class ids
    sv = is_seen_video.to(device=device, dtype=torch.bool)
    S = per_class_accuracy(pred[:, sv], labels[sv], torch.unique(labels[sv]))
    U = per_class_accuracy(pred[:, ~sv], labels[~sv], torch.unique(labels[~sv]))
    # ZSL: unseen videos, search space restricted to the unseen classes
    du = d[~sv][:, unseen_col]
    zsl_pred = search_classes[unseen_col][du.argmin(dim=1)]
    Z = per_class_accuracy(zsl_pred[None, :], labels[~sv], torch.unique(labels[~sv]))
    return GZSLResult(betas=betas.cpu(), S=S.cpu(), U=U.cpu(), HM=harmonic_mean(S, U).cpu(), ZSL=float(Z[0]))
