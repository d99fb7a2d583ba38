"""SJE: structured joint embedding, hinge on the most violating class.

Akata, Reed, Walter, Lee, Schiele. "Evaluation of Output Embeddings for
Fine-Grained Image Classification", CVPR 2015; the audio-visual version is the
baseline of the AVCA-GZSL benchmark.

Model (shared with ALE and DeViSE, see ``avbench.methods._linear``)::

    F(x, c) = (W · [v ‖ a])ᵀ t_c          W: (Dv + Da) -> 300, no bias,
                                          dropout on [v ‖ a] and on t (training)

Loss, over all training classes of the stage, margin Δ = 0.1 (structured SVM
with 0/1 label loss scaled to Δ)::

    loss = mean over the batch of  max_{c ≠ y} max(0, Δ + F(x, c) - F(x, y))

as the reference (``ClsContrastiveLoss(max_violation=True, topk=1)``).

Prediction: Euclidean distance between W·x and t_c, as the reference evaluation
(``prediction=compatibility`` uses -F(x, c) instead); see ``_linear``.

Choices: the paper trains with SGD one sample at a time; the benchmark (and this
file) uses mini-batches with Adam. The protocol's negatives are not used, as in
the reference: the most violating class is searched among all training classes.
"""

from __future__ import annotations

import torch

from avbench.methods import register
from avbench.methods._linear import LinearCompatibility, margin_violations


def sje_loss(scores: torch.Tensor, label: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over the batch of the largest margin violation of a [B, C] score matrix."""
    return margin_violations(scores, label, margin).amax(dim=1).mean()


@register("sje")
class SJE(LinearCompatibility):
    description = "linear map of [video ‖ audio] to the text space, structured hinge on the most violating class"
    paper = (
        "Akata, Reed, Walter, Lee, Schiele, "
        "Evaluation of Output Embeddings for Fine-Grained Image Classification, CVPR 2015"
    )

    def ranking_loss(self, scores: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return sje_loss(scores, label, self.margin)
