"""Training and evaluation loops: tensors on the run's device, no DataLoader.

An epoch is ``batches_per_epoch`` batches of ``batch_size`` (positive, negative)
pairs drawn class-balanced with replacement, as in the AVCA reference: every
batch row picks a class uniformly, then a video of that class. Its negative is a
video of another class, drawn in one of two ways (setting ``negatives``):

- ``batch`` (default): a uniformly chosen row of the same batch whose class
  differs. Each pair has the reference's distribution (the other class is uniform,
  the video uniform within it), and methods can reuse the positives' forward pass
  for the negatives, which halves the encoder work of a step.
- ``independent``: as the reference code, another class uniformly, then a fresh
  video of it.

All indices of an epoch are drawn at once from a seeded CPU generator, so the same
seed draws the same pairs on every device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from avbench.data.benchmark import Split, concat_lazy
from avbench.errors import ConfigError
from avbench.methods.base import Batch, Method, TrainData
from avbench.protocol.feed import Features, Prefetcher, eval_chunks
from avbench.protocol.metrics import GZSLResult, evaluate_gzsl


@dataclass
class TrainSet:
    """Training videos (features resident on the run's device or streamed, see ``feed``),
    labels local to ``classes``."""

    audio: Features
    video: Features
    label: torch.Tensor  # [N] local class index
    classes: np.ndarray  # [C] global class ids
    text: torch.Tensor  # [C, E]
    members: torch.Tensor  # [C, max_n] row indices of each class (padded)
    counts: torch.Tensor  # [C]

    def __post_init__(self):
        self.audio, self.video = _features(self.audio), _features(self.video)

    @classmethod
    def build(cls, split: Split, embeddings: np.ndarray, device: torch.device, resident: bool = True) -> "TrainSet":
        classes, local = np.unique(split.labels, return_inverse=True)
        counts = np.bincount(local, minlength=len(classes))
        members = np.zeros((len(classes), counts.max()), dtype=np.int64)
        order = np.argsort(local, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for c in range(len(classes)):
            members[c, : counts[c]] = order[starts[c] : starts[c] + counts[c]]
        return cls(
            audio=Features(split.audio, device, resident),
            video=Features(split.video, device, resident),
            label=torch.as_tensor(local, dtype=torch.long, device=device),
            classes=classes,
            text=torch.as_tensor(embeddings[classes], device=device),
            members=torch.as_tensor(members),
            counts=torch.as_tensor(counts),
        )

    @property
    def resident(self) -> bool:
        return self.audio.resident

    @property
    def temporal(self) -> bool:
        return self.audio.ragged

    def all_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every training video's features (for ``Method.setup``): [N, D], or [N, T, D] padded."""
        return self.audio.rows(0, len(self.audio))[0], self.video.rows(0, len(self.video))[0]


def _features(x) -> Features:
    """A resident [N, D] tensor given directly (tests, hand-made sets) as trainer features."""
    return Features(x, x.device, True) if isinstance(x, torch.Tensor) else x


class PairSampler:
    """Class-balanced (positive, negative) index pairs, drawn with replacement."""

    MODES = ("batch", "independent")

    def __init__(self, train: TrainSet, batch_size: int, seed: int, negatives: str = "batch"):
        if negatives not in self.MODES:
            raise ConfigError(f"setting negatives={negatives!r}: expected one of {', '.join(self.MODES)}")
        self.members, self.counts = train.members, train.counts
        self.n_classes = len(train.counts)
        if self.n_classes < 2:
            raise ConfigError("training needs videos of at least 2 classes to draw negatives")
        self.batch_size = int(batch_size)
        if negatives == "batch" and self.batch_size < 2:
            raise ConfigError("negatives=batch needs batch_size >= 2")
        self.negatives = negatives
        self.gen = torch.Generator().manual_seed(int(seed))

    def _videos_of(self, cls: torch.Tensor) -> torch.Tensor:
        u = torch.rand(cls.shape, generator=self.gen, dtype=torch.float64)
        j = (u * self.counts[cls]).long().clamp_max(self.counts[cls] - 1)
        return self.members[cls, j]

    def _rows_of_other_class(self, cls: torch.Tensor) -> torch.Tensor:
        """For each row, a uniformly chosen row of the same batch with another class."""
        n, B = cls.shape
        rows = torch.arange(B).expand(n, B)
        pick = (rows + torch.randint(1, B, (n, B), generator=self.gen)) % B
        bad = torch.gather(cls, 1, pick) == cls
        for _ in range(64):  # rejection sampling keeps the choice uniform
            if not bool(bad.any()):
                return pick
            redraw = (rows + torch.randint(1, B, (n, B), generator=self.gen)) % B
            pick = torch.where(bad, redraw, pick)
            bad = torch.gather(cls, 1, pick) == cls
        # a batch whose rows nearly all share one class: fall back to a fresh video
        return torch.where(bad, -1, pick)

    def epoch(self, n_batches: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(positive video rows, negative video rows, in-batch negative index or None), each [n_batches, B]."""
        shape = (int(n_batches), self.batch_size)
        pos_cls = torch.randint(self.n_classes, shape, generator=self.gen)
        pos = self._videos_of(pos_cls)
        if self.negatives == "batch":
            idx = self._rows_of_other_class(pos_cls)
            if not bool((idx < 0).any()):
                return pos, torch.gather(pos, 1, idx), idx
        neg_cls = (pos_cls + torch.randint(1, self.n_classes, shape, generator=self.gen)) % self.n_classes
        return pos, self._videos_of(neg_cls), None


@dataclass
class EvalSet:
    """Videos of a seen split and an unseen split, scored against one search space."""

    audio: Features
    video: Features
    labels: torch.Tensor  # [N] global class ids
    is_seen_video: torch.Tensor  # [N] bool
    search_classes: torch.Tensor  # [K] global class ids
    seen_classes: torch.Tensor
    unseen_classes: torch.Tensor
    text: torch.Tensor  # [K, E]

    def __post_init__(self):
        self.audio, self.video = _features(self.audio), _features(self.video)

    @classmethod
    def build(
        cls, seen_split: Split, unseen_split: Split, seen_classes: np.ndarray, embeddings: np.ndarray, device,
        resident: bool = True,
    ) -> "EvalSet":
        unseen_classes = np.unique(unseen_split.labels)
        search = np.union1d(seen_classes, unseen_classes)
        # splits still in the file are read once, straight into one array (resident) or row ranges (streamed)
        both = concat_lazy("eval", [seen_split, unseen_split])
        return cls(
            audio=Features(both.audio, device, resident),
            video=Features(both.video, device, resident),
            labels=torch.as_tensor(np.concatenate([seen_split.labels, unseen_split.labels]), device=device),
            is_seen_video=torch.cat(
                [torch.ones(len(seen_split), dtype=torch.bool), torch.zeros(len(unseen_split), dtype=torch.bool)]
            ).to(device),
            search_classes=torch.as_tensor(search, device=device),
            seen_classes=torch.as_tensor(np.asarray(seen_classes), device=device),
            unseen_classes=torch.as_tensor(unseen_classes, device=device),
            text=torch.as_tensor(embeddings[search], device=device),
        )


def _distances(method: Method, data: EvalSet, chunk: int, named: bool):
    """The [N, K] distances of ``data`` (or, with ``named``, every named output), in eval mode."""
    was_training = method.training
    method.eval()
    try:
        method.prepare_eval(data.text, torch.isin(data.search_classes, data.seen_classes))
        with torch.no_grad():
            parts = []
            score = method.named_distances if named else method.distances
            for a, b in eval_chunks(data.audio, data.video, chunk):
                (audio, a_len), (video, v_len) = data.audio.rows(a, b), data.video.rows(a, b)
                kw = {} if a_len is None else {"audio_len": a_len, "video_len": v_len}
                parts.append(score(audio, video, data.text, **kw))
    finally:
        method.train(was_training)
    if named:
        if method.predicts not in parts[0]:
            raise ConfigError(f"method {method.name}: named_distances() has no output {method.predicts!r} "
                              f"(its predicting output); it has {', '.join(parts[0])}")
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


def _score(d: torch.Tensor, data: EvalSet, betas: torch.Tensor) -> GZSLResult:
    return evaluate_gzsl(
        d, data.labels, data.search_classes, data.seen_classes, data.unseen_classes, data.is_seen_video, betas
    )


def evaluate(method: Method, data: EvalSet, betas: torch.Tensor, chunk: int = 4096) -> GZSLResult:
    """Metrics of the predicting output over the β grid."""
    return _score(_distances(method, data, chunk, named=False), data, betas)


def evaluate_outputs(method: Method, data: EvalSet, betas: torch.Tensor, chunk: int = 4096) -> dict[str, GZSLResult]:
    """Metrics of every named output of the method (``Method.named_distances``) over the β grid."""
    return {k: _score(d, data, betas) for k, d in _distances(method, data, chunk, named=True).items()}


def validation_record(method: Method, data: EvalSet, betas: torch.Tensor, chunk: int, beta_rule: str) -> dict:
    """The predicting output's metrics at its best β; with the ``mean`` β rule also every output's best β.

    ``betas`` in the record maps each output to the β that maximised its own HM (the
    AVCA-GZSL evaluation scores the audio, video and joint outputs each over the grid,
    src/utils.py evaluate_dataset L353-363).
    """
    if beta_rule == "predictor":
        res = evaluate(method, data, betas, chunk=chunk)
        return res.at(res.best)
    per_output = evaluate_outputs(method, data, betas, chunk=chunk)
    res = per_output[method.predicts]
    return {**res.at(res.best), "betas": {k: float(r.betas[r.best]) for k, r in per_output.items()}}


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    lr: float
    loss: float
    val: dict | None = None  # metrics at the epoch's best β (fractions)


def _epoch_features(train_set: TrainSet, pos: torch.Tensor, neg: torch.Tensor) -> Iterator[tuple]:
    """Per batch: ((audio, lens), (video, lens), (neg audio, lens), (neg video, lens)) on the device;
    streamed data is read one batch ahead."""
    if train_set.resident:
        dev = train_set.audio.device
        pos, neg = pos.to(dev), neg.to(dev)
        for b in range(pos.shape[0]):
            p, n = pos[b], neg[b]
            yield (train_set.audio.take(p), train_set.video.take(p), train_set.audio.take(n), train_set.video.take(n))
        return
    reader = Prefetcher([train_set.audio, train_set.video])
    try:
        for (a, na), (v, nv) in reader.iterate(pos, neg):
            yield a, v, na, nv
    finally:
        reader.close()


def train(method: Method, train_set: TrainSet, *, on_epoch: Callable[[EpochRecord], None] | None = None,
          **kw) -> list[EpochRecord]:
    """Train ``method`` for ``epochs`` epochs (see :func:`train_epochs`); the epoch records."""
    history = []
    for rec in train_epochs(method, train_set, **kw):
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
    return history


def train_epochs(
    method: Method,
    train_set: TrainSet,
    *,
    epochs: int,
    batches_per_epoch: int,
    batch_size: int,
    seed: int,
    val: EvalSet | None = None,
    betas: torch.Tensor | None = None,
    lr_schedule: list[float] | None = None,
    lr_patience: int = 3,
    lr_factor: float = 0.1,
    on_batch: Callable[[], None] | None = None,
    eval_batch_size: int = 4096,
    negatives: str = "batch",
    beta_rule: str = "predictor",
) -> Iterator[EpochRecord]:
    """Train ``method`` for ``epochs`` epochs, yielding each epoch's record as it ends.

    With ``val``: evaluate after every epoch and step ReduceLROnPlateau (mode max)
    on validation HM. Without it, ``lr_schedule`` (one LR per epoch, as recorded
    in stage 1) is replayed; nothing else can change the learning rate.
    ``beta_rule`` ``mean`` also records each named output's best validation β.
    After every optimiser step ``method.after_step(batch)`` runs (in train mode).
    A generator, so a search can advance several seeds' runs one epoch at a time.
    """
    method.setup(TrainData(train_set.all_features, label=train_set.label, text=train_set.text))
    opt = method.optimizer()  # after setup(): parameters it creates are optimised too
    sched = None
    if val is not None:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=lr_patience, factor=lr_factor)
    sampler = PairSampler(train_set, batch_size, seed, negatives)
    method.train()
    for epoch in range(1, epochs + 1):
        if lr_schedule is not None and val is None:
            for g in opt.param_groups:
                g["lr"] = lr_schedule[epoch - 1]
        lr = float(opt.param_groups[0]["lr"])
        dev = train_set.audio.device
        pos, neg, in_batch = sampler.epoch(batches_per_epoch)
        label_pos, label_neg = train_set.label[pos.to(dev)], train_set.label[neg.to(dev)]
        in_batch = in_batch.to(dev) if in_batch is not None else None
        total = torch.zeros((), device=dev)
        for b, feats in enumerate(_epoch_features(train_set, pos, neg)):
            (a, a_len), (v, v_len), (na, na_len), (nv, nv_len) = feats
            batch = Batch(
                audio=a,
                video=v,
                label=label_pos[b],
                neg_audio=na,
                neg_video=nv,
                neg_label=label_neg[b],
                text=train_set.text,
                neg_index=in_batch[b] if in_batch is not None else None,
            )
            if a_len is not None:
                batch.audio_len, batch.video_len = a_len, v_len
                batch.neg_audio_len, batch.neg_video_len = na_len, nv_len
            loss, _ = method.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            method.after_step(batch)
            total += loss.detach()
            if on_batch is not None:
                on_batch()
        rec = EpochRecord(epoch=epoch, lr=lr, loss=float(total) / batches_per_epoch)
        if val is not None:
            rec.val = validation_record(method, val, betas, eval_batch_size, beta_rule)
            sched.step(rec.val["HM"])
        yield rec
