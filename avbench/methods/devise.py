"""DeViSE: deep visual-semantic embedding, hinge ranking loss summed over classes.

Frome, Corrado, Shlens, Bengio, Dean, Ranzato, Mikolov. "DeViSE: A Deep
Visual-Semantic Embedding Model", NeurIPS 2013; the audio-visual version (a
linear map of pre-extracted features) is the baseline of the AVCA-GZSL benchmark.

Model (shared with ALE and SJE, see ``avbench.methods._linear``)::

    F(x, c) = (W · [v ‖ a])ᵀ t_c          W: (Dv + Da) -> 300, no bias,
                                          dropout on [v ‖ a] and on t (training)

Loss, over all training classes of the stage, margin Δ = 0.1::

    loss = mean over the batch of  Σ_{c ≠ y} max(0, Δ + F(x, c) - F(x, y))

as the reference (``ClsContrastiveLoss(max_violation=False, reduction="sum")``).

Prediction: Euclidean distance between W·x and t_c, as the reference evaluation
(``prediction=compatibility`` uses -F(x, c) instead); see ``_linear``.

Choices: the paper maps the output of an image CNN (fine-tuned in a second
phase) and, to save time, samples false labels and stops at the first violation;
the benchmark (and this file) maps fixed features linearly and sums the hinge
over every training class, which is cheap here. The protocol's negatives are not
used, as in the reference.
"""

from __future__ import annotations

import torch

from avbench.methods import register
from avbench.methods._linear import LinearCompatibility, margin_violations


def devise_loss(scores: torch.Tensor, label: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over the batch of the summed margin violations of a [B, C] score matrix."""
    return margin_violations(scores, label, margin).sum(dim=1).mean()


@register("devise")
class DeViSE(LinearCompatibility):
    description = "linear map of [video ‖ audio] to the text space, hinge ranking loss summed over classes"
    paper = "Frome et al., DeViSE: A Deep Visual-Semantic Embedding Model, NeurIPS 2013"

    def ranking_loss(self, scores: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return devise_loss(scores, label, self.margin)
