"""What a method is to the protocol: a torch module with a loss and a distance.

A method never sees splits, class roles or the test set. The protocol hands it:
- once before training, :meth:`Method.setup` with the training tensors (most
  methods ignore it; a generative method keeps them to train its classifier);
- at training time a :class:`Batch` of (positive, negative) pairs plus the text
  embeddings of the classes it may train on;
- before scoring a search space, :meth:`Method.prepare_eval` with the text
  embeddings of that space and which of its classes were trained on;
- at evaluation time audio, video and the text embeddings of the search space,
  and asks for a [N, K] distance matrix (lower = closer). A method whose paper
  defines a compatibility or probability score returns its negation (or
  -log-probability), so calibrated stacking is the same for every method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


@dataclass
class Batch:
    """(positive, negative) pairs. Labels index rows of ``text`` (the training classes)."""

    audio: torch.Tensor  # [B, Da]
    video: torch.Tensor  # [B, Dv]
    label: torch.Tensor  # [B] long
    neg_audio: torch.Tensor  # [B, Da]
    neg_video: torch.Tensor  # [B, Dv]
    neg_label: torch.Tensor  # [B] long
    text: torch.Tensor  # [C_train, E]
    # When negatives are drawn from the batch itself (the default), row i's negative
    # is row neg_index[i] of the positives; a method may then reuse the positives'
    # forward pass instead of encoding the negatives again.
    neg_index: torch.Tensor | None = None
    # Temporal features only (methods with inputs = "temporal"): audio/video are
    # [B, T, D] zero-padded and these hold the valid steps of each row.
    audio_len: torch.Tensor | None = None
    video_len: torch.Tensor | None = None
    neg_audio_len: torch.Tensor | None = None
    neg_video_len: torch.Tensor | None = None


@dataclass
class TrainData:
    """All training videos of the current stage (labels index rows of ``text``)."""

    audio: torch.Tensor  # [N, Da]
    video: torch.Tensor  # [N, Dv]
    label: torch.Tensor  # [N] long
    text: torch.Tensor  # [C_train, E]


@dataclass(frozen=True)
class Dims:
    audio: int
    video: int
    text: int


class Method(nn.Module):
    """Base class of every registered method."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    # "averaged": [N, D] features (a temporal benchmark is averaged over time for it);
    # "temporal": [N, T, D] sequences with lengths (needs a temporal benchmark), and
    # distances() then also receives audio_len= and video_len=.
    inputs: ClassVar[str] = "averaged"

    @classmethod
    def defaults(cls, dataset: str, features: str) -> dict:
        """Method settings (and protocol settings it overrides) for a benchmark."""
        return {}

    def __init__(self, dims: Dims, config: dict):
        super().__init__()
        self.dims = dims
        self.config = dict(config)

    def setup(self, train: TrainData) -> None:
        """Called once before training with the stage's training tensors."""

    def prepare_eval(self, text: torch.Tensor, seen: torch.Tensor) -> None:
        """Called (in eval mode, gradients enabled) before scoring a search space.

        ``text`` [K, E] are the class embeddings of the search space, ``seen`` [K]
        marks the classes the method was trained on.
        """

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss to minimise and its named parts (detached tensors, for logging)."""
        raise NotImplementedError

    def distances(self, audio: torch.Tensor, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """[N, K] distance of each video to each class of the search space."""
        raise NotImplementedError

    def optimizer(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=float(self.config.get("lr", 1e-3)))


def adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam with the fused kernel (several times faster for small models on CPU)."""
    params = [p for p in params if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
