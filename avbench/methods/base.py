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
  -log-probability), so calibrated stacking is the same for every method;
- after every optimiser step, :meth:`Method.after_step` with the step's batch
  (nothing by default; a method may run the extra train-mode passes of its
  public code there, which change BatchNorm running statistics).

Several outputs. A method may score a video with several distance matrices (e.g.
its audio, video and joint embeddings): :meth:`Method.named_distances` returns
them by name and ``predicts`` names the one that labels videos (``distances``
returns that one). The protocol picks a β per output on validation; how the test
β is formed from them is the protocol's β rule (the β of the predicting output,
or the mean of all of them as the AVCA-GZSL evaluation does).

Reference protocol. :meth:`Method.reference_protocol` declares what the method's
public code does (``--protocol reference``): the protocol preset it follows, its
β rule, its epoch-selection rule and the settings that restore its behaviour, each
with the code line it comes from (:class:`Reference`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from avbench.errors import ConfigError


def feature_family(features: str) -> str:
    """``main``, ``cls`` or ``clipclap``: the features a benchmark's feature set is made of.

    The temporal sets are the per-second sequences of the main / cls features (an
    averaged-feature method sees their time average, which is what the averaged sets
    hold), so they share those sets' published settings.
    """
    return features.split("-", 1)[1] if features.startswith("temporal-") else features


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


class TrainData:
    """All training videos of the current stage (labels index rows of ``text``).

    ``audio`` [N, Da] and ``video`` [N, Dv] may be given as tensors or as one callable
    returning both: the trainer passes a callable, so features of a split streamed
    from disk are read whole only if a method's ``setup`` asks for them.
    """

    def __init__(self, audio, video=None, label: torch.Tensor | None = None, text: torch.Tensor | None = None):
        self._features = audio if callable(audio) else (lambda: (audio, video))
        self._loaded = None
        self.label = label  # [N] long
        self.text = text  # [C_train, E]

    def _load(self):
        if self._loaded is None:
            self._loaded = self._features()
        return self._loaded

    @property
    def audio(self) -> torch.Tensor:
        return self._load()[0]

    @property
    def video(self) -> torch.Tensor:
        return self._load()[1]


@dataclass(frozen=True)
class Reference:
    """A method's reference protocol: how its public code trains, selects and tests.

    ``preset`` is a protocol preset name; ``beta_rule`` ("predictor" or "mean") says
    how the test β is formed from the per-output validation β's; ``selection`` the
    stage-1 epoch rule ("first-best" or "zero-is-unset", see protocol.run.select);
    ``stage2_lr`` the stage-2 learning-rate rule ("replay" the stage-1 schedule, or
    "val-plateau": ReduceLROnPlateau on validation HM, see protocol.presets);
    ``options`` are method or protocol settings (keys of the resolved config) with
    the values that restore the code's behaviour. ``whole_sequences``: the code reads
    per-second sequences whole, so a benchmark whose sequences were cropped when it was
    written (``--max-len``) cannot reproduce it and is refused. ``sources`` names, for
    "beta_rule", "selection", "stage2_lr", every option and ``whole_sequences`` when set, the file
    and function (line) of the public code it follows (the preset's lines are its
    ``Preset.source``).
    """

    code: str  # public repository, e.g. github.com/ExplainableML/AVCA-GZSL
    preset: str
    beta_rule: str
    selection: str
    options: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    whole_sequences: bool = False
    stage2_lr: str = "replay"  # avbench's reference protocols all declare "val-plateau", as their codes do


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
    # the output of named_distances() that labels videos (distances() returns it)
    predicts: ClassVar[str] = "joint"

    @classmethod
    def defaults(cls, dataset: str, features: str) -> dict:
        """Method settings (and protocol settings it overrides) for a benchmark."""
        return {}

    @classmethod
    def reference_protocol(cls, dataset: str, features: str) -> Reference:
        """The protocol of the method's public code (``--protocol reference``).

        Raise :class:`~avbench.errors.ConfigError` with the reason when there is none
        (no public code, or code whose protocol cannot be reproduced without the test set).
        """
        raise ConfigError(
            f"method {cls.name!r} declares no reference protocol; use a preset (e.g. --protocol avca2022)"
        )

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

    def named_distances(self, audio: torch.Tensor, video: torch.Tensor, text: torch.Tensor, **kw) -> dict:
        """Every distance output by name ([N, K] each), ``predicts`` among them; one by default."""
        return {self.predicts: self.distances(audio, video, text, **kw)}

    def after_step(self, batch: Batch) -> None:
        """Called (in train mode) after every optimiser step with the step's batch."""

    def optimizer(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=float(self.config.get("lr", 1e-3)))


def adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam with the fused kernel (several times faster for small models on CPU)."""
    params = [p for p in params if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
