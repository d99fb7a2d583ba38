"""ALE: attribute label embedding with a weighted approximate ranking loss.

Akata, Perronnin, Harchaoui, Schmid. "Label-Embedding for Image Classification",
TPAMI 2016 (CVPR 2013 "Label-Embedding for Attribute-Based Classification");
the audio-visual version is the baseline of the AVCA-GZSL benchmark.

Model (shared with SJE and DeViSE, see ``avbench.methods._linear``)::

    F(x, c) = (W · [v ‖ a])ᵀ t_c          W: (Dv + Da) -> 300, no bias,
                                          dropout on [v ‖ a] and on t (training)

Loss, over all training classes of the stage, margin Δ = 0.1::

    ℓ_c   = max(0, Δ + F(x, c) - F(x, y))          for c ≠ y
    r     = #{c : ℓ_c > 0}                          rank of the true class (with margin)
    loss  = mean over the batch of  H(r)/r · Σ_c ℓ_c,     H(r) = Σ_{k=1..r} 1/k

so a video whose true class is ranked low gets a larger share of the gradient
(the WSABIE / ALE rank weighting; H(0)/0 = 0). The weights are not
differentiated, as in the reference (``ClsContrastiveLoss(reduction="weighted")``).

Prediction: Euclidean distance between W·x and t_c, as the reference evaluation
(``prediction=compatibility`` uses -F(x, c) instead); see ``_linear``.

Choices where the public code leaves a detail open or where this file differs:
- The reference tabulates H(r) for r ≤ 700 only; here the table covers any number
  of classes (same values up to 700).
- The (positive, negative) pairs of the protocol are not used beyond the
  positives, as in the reference: the loss ranks against every training class.
"""

from __future__ import annotations

import torch

from avbench.methods import register
from avbench.methods._linear import LinearCompatibility, margin_violations


def ale_loss(scores: torch.Tensor, label: torch.Tensor, margin: float) -> torch.Tensor:
    """Rank-weighted hinge: mean_i H(r_i)/r_i · Σ_c ℓ_ic over a [B, C] score matrix."""
    cost = margin_violations(scores, label, margin)
    C = scores.shape[1]
    harmonic = torch.zeros(C + 1, dtype=scores.dtype, device=scores.device)
    harmonic[1:] = torch.cumsum(1.0 / torch.arange(1, C + 1, dtype=scores.dtype, device=scores.device), 0)
    rank = (cost > 0).sum(dim=1)  # [B] violating classes
    weight = harmonic[rank] / rank.clamp(min=1)
    return (cost.sum(dim=1) * weight).mean()


@register("ale")
class ALE(LinearCompatibility):
    description = "linear map of [video ‖ audio] to the text space, trained with a rank-weighted hinge loss"
    paper = "Akata, Perronnin, Harchaoui, Schmid, Label-Embedding for Image Classification, TPAMI 2016"

    def ranking_loss(self, scores: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return ale_loss(scores, label, self.margin)
