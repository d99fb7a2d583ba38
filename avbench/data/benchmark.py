"""One benchmark variant (e.g. UCF-GZSL with SeLaVi features) as avbench holds it.

A :class:`Benchmark` knows its class list, the class-embedding matrix (built by
name, plus the public code's misaligned order for comparison), which classes each
split holds and a content fingerprint. Feature tensors of a split are read only
when :meth:`Benchmark.split` asks for them, so a caller that never asks for a
test split never has test features in memory.

On disk a benchmark is one HDF5 file::

    /                       attrs: format, name, dataset, features, fingerprint, ...
    /classes/names          [C] utf-8
    /classes/embeddings     [C, E] float32, row c = embedding of class c by name
    /classes/embeddings_legacy  [C, E] float32, the public code's order
    /splits/<split>/audio   [N, Da] float32
    /splits/<split>/video   [N, Dv] float32
    /splits/<split>/labels  [N] int64 (index into /classes/names)
    /splits/<split>/video_ids [N] utf-8
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from avbench.errors import DataError

FORMAT_VERSION = 1

# Splits stored on disk, as in the public layout's feature folders.
STORED_SPLITS = (
    "stage_1_train",
    "stage_1_val_seen",
    "stage_1_val_unseen",
    "stage_2_test_seen",
    "stage_2_test_unseen",
)
# stage_2_train is derived, as in the reference code: stage_1_train ∪ val_seen ∪ val_unseen.
STAGE_2_TRAIN_PARTS = ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen")
SPLITS = STORED_SPLITS[:3] + ("stage_2_train",) + STORED_SPLITS[3:]
TEST_SPLITS = ("stage_2_test_seen", "stage_2_test_unseen")
TEXT_ORDERS = ("by-name", "legacy")


@dataclass(frozen=True)
class Split:
    """The videos of one split: features, global class labels and video ids.

    Averaged features are [N, D]. Temporal features (per-second sequences) are
    [N, T, D], zero-padded, with the number of valid steps in ``audio_len`` /
    ``video_len`` [N].
    """

    name: str
    audio: np.ndarray
    video: np.ndarray
    labels: np.ndarray
    video_ids: np.ndarray
    audio_len: np.ndarray | None = None
    video_len: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.labels)

    @property
    def temporal(self) -> bool:
        return self.audio.ndim == 3

    def averaged(self) -> "Split":
        """Mean over the valid time steps (a temporal split as averaged features)."""
        if not self.temporal:
            return self

        def mean(x, n):
            steps = np.arange(x.shape[1])[None, :, None] < n[:, None, None]
            return (x * steps).sum(1) / np.maximum(n, 1)[:, None]

        return Split(self.name, mean(self.audio, self.audio_len).astype(np.float32),
                     mean(self.video, self.video_len).astype(np.float32), self.labels, self.video_ids)


def fingerprint_of(class_names, embeddings, legacy, splits: Mapping[str, Split]) -> str:
    """sha256 over everything that can change a result: names, embeddings, features."""
    h = hashlib.sha256()
    h.update("\n".join(class_names).encode())
    h.update(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(legacy, dtype=np.float32).tobytes())
    for name in STORED_SPLITS:
        s = splits[name]
        h.update(name.encode())
        h.update(np.ascontiguousarray(s.audio, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(s.video, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(s.labels, dtype=np.int64).tobytes())
        h.update("\n".join(map(str, s.video_ids)).encode())
        for lens in (s.audio_len, s.video_len):
            if lens is not None:
                h.update(np.ascontiguousarray(lens, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def concat_splits(name: str, parts: list[Split]) -> Split:
    temporal = parts[0].temporal
    return Split(
        name=name,
        audio=np.concatenate([p.audio for p in parts]),
        video=np.concatenate([p.video for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        video_ids=np.concatenate([np.asarray(p.video_ids) for p in parts]),
        audio_len=np.concatenate([p.audio_len for p in parts]) if temporal else None,
        video_len=np.concatenate([p.video_len for p in parts]) if temporal else None,
    )


class Benchmark:
    """Class structure of a benchmark plus lazy access to its splits."""

    def __init__(
        self,
        *,
        name: str,
        dataset: str,
        features: str,
        class_names: list[str],
        embeddings: np.ndarray,
        legacy_embeddings: np.ndarray,
        split_classes: Mapping[str, np.ndarray],
        split_sizes: Mapping[str, int],
        audio_dim: int,
        video_dim: int,
        fingerprint: str,
        loader: Callable[[str], Split],
        source: str = "",
        temporal: bool = False,
    ):
        self.name = name
        self.dataset = dataset
        self.features = features
        self.class_names = list(class_names)
        self._embeddings = {"by-name": embeddings, "legacy": legacy_embeddings}
        self.split_classes = {k: np.asarray(v, dtype=np.int64) for k, v in split_classes.items()}
        self.split_sizes = dict(split_sizes)
        self.audio_dim = int(audio_dim)
        self.video_dim = int(video_dim)
        self.fingerprint = fingerprint
        self.source = source
        self._loader = loader
        self.temporal = bool(temporal)  # per-second sequences [N, T, D] instead of averaged [N, D]
        self.loaded: list[str] = []  # which splits were read, in order (for audits)
        self.budget: dict = {}  # protocol settings this benchmark suggests (e.g. a small epoch budget)

    # -- access -----------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def text_dim(self) -> int:
        return int(self._embeddings["by-name"].shape[1])

    def embeddings(self, text_order: str = "by-name") -> np.ndarray:
        if text_order not in TEXT_ORDERS:
            raise DataError(f"text order {text_order!r}: expected one of {', '.join(TEXT_ORDERS)}")
        return self._embeddings[text_order]

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise DataError(f"split {name!r}: expected one of {', '.join(SPLITS)}")
        self.loaded.append(name)
        if name == "stage_2_train":
            return concat_splits(name, [self._loader(p) for p in STAGE_2_TRAIN_PARTS])
        return self._loader(name)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "classes": self.num_classes,
            "audio_dim": self.audio_dim,
            "video_dim": self.video_dim,
            "text_dim": self.text_dim,
            "temporal": self.temporal,
            "fingerprint": self.fingerprint,
            **{f"{k}": f"{len(self.split_classes[k])} / {self.split_sizes[k]}" for k in SPLITS},
        }

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_splits(
        cls,
        *,
        name: str,
        dataset: str,
        features: str,
        class_names: list[str],
        embeddings: np.ndarray,
        legacy_embeddings: np.ndarray | None,
        splits: Mapping[str, Split],
        source: str = "",
    ) -> "Benchmark":
        """An in-memory benchmark (synthetic data, or an import about to be saved)."""
        missing = [s for s in STORED_SPLITS if s not in splits]
        if missing:
            raise DataError(f"benchmark {name}: missing split(s) {', '.join(missing)}")
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        legacy = embeddings if legacy_embeddings is None else np.ascontiguousarray(legacy_embeddings, dtype=np.float32)
        fp = fingerprint_of(class_names, embeddings, legacy, splits)
        first = splits["stage_1_train"]
        held = {k: splits[k] for k in STORED_SPLITS}
        split_classes = {k: s.classes for k, s in held.items()}
        split_sizes = {k: len(s) for k, s in held.items()}
        split_classes["stage_2_train"] = np.unique(np.concatenate([split_classes[p] for p in STAGE_2_TRAIN_PARTS]))
        split_sizes["stage_2_train"] = sum(split_sizes[p] for p in STAGE_2_TRAIN_PARTS)
        return cls(
            name=name,
            dataset=dataset,
            features=features,
            class_names=class_names,
            embeddings=embeddings,
            legacy_embeddings=legacy,
            split_classes=split_classes,
            split_sizes=split_sizes,
            audio_dim=first.audio.shape[-1],
            video_dim=first.video.shape[-1],
            fingerprint=fp,
            loader=held.__getitem__,
            source=source,
            temporal=first.temporal,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the benchmark to one HDF5 file, atomically (temp file + rename)."""
        import h5py

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        str_dt = h5py.string_dtype("utf-8")
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs.update(
                    format=FORMAT_VERSION,
                    name=self.name,
                    dataset=self.dataset,
                    features=self.features,
                    fingerprint=self.fingerprint,
                    audio_dim=self.audio_dim,
                    video_dim=self.video_dim,
                    source=self.source,
                    temporal=int(self.temporal),
                )
                g = f.create_group("classes")
                g.create_dataset("names", data=np.array(self.class_names, dtype=object), dtype=str_dt)
                g.create_dataset("embeddings", data=self._embeddings["by-name"])
                g.create_dataset("embeddings_legacy", data=self._embeddings["legacy"])
                sg = f.create_group("splits")
                for name in STORED_SPLITS:
                    s = self._loader(name)
                    d = sg.create_group(name)
                    d.create_dataset("audio", data=np.ascontiguousarray(s.audio, dtype=np.float32))
                    d.create_dataset("video", data=np.ascontiguousarray(s.video, dtype=np.float32))
                    d.create_dataset("labels", data=np.asarray(s.labels, dtype=np.int64))
                    d.create_dataset("video_ids", data=np.array(list(map(str, s.video_ids)), dtype=object), dtype=str_dt)
                    if s.temporal:
                        d.create_dataset("audio_len", data=np.asarray(s.audio_len, dtype=np.int64))
                        d.create_dataset("video_len", data=np.asarray(s.video_len, dtype=np.int64))
                    d.attrs["classes"] = self.split_classes[name]
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a data file is shared like any other
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Benchmark":
        """Open a saved benchmark; only metadata is read until a split is asked for."""
        import h5py

        path = Path(path)
        try:
            with h5py.File(path, "r") as f:
                if int(f.attrs.get("format", -1)) != FORMAT_VERSION:
                    raise DataError(
                        f"{path}: format {f.attrs.get('format')!r}, expected {FORMAT_VERSION}; re-run `avbench data import`"
                    )
                a = dict(f.attrs)
                names = [n for n in f["classes/names"].asstr()[()]]
                emb = f["classes/embeddings"][()]
                legacy = f["classes/embeddings_legacy"][()]
                split_classes = {k: f[f"splits/{k}"].attrs["classes"] for k in STORED_SPLITS}
                split_sizes = {k: int(f[f"splits/{k}/labels"].shape[0]) for k in STORED_SPLITS}
                split_classes["stage_2_train"] = np.unique(
                    np.concatenate([split_classes[p] for p in STAGE_2_TRAIN_PARTS])
                )
                split_sizes["stage_2_train"] = sum(split_sizes[p] for p in STAGE_2_TRAIN_PARTS)
        except (OSError, KeyError) as e:
            raise DataError(f"{path}: not a readable avbench benchmark file ({e})") from None

        def load(name: str) -> Split:
            with h5py.File(path, "r") as f:
                g = f[f"splits/{name}"]
                return Split(
                    name=name,
                    audio=g["audio"][()],
                    video=g["video"][()],
                    labels=g["labels"][()],
                    video_ids=g["video_ids"].asstr()[()],
                    audio_len=g["audio_len"][()] if "audio_len" in g else None,
                    video_len=g["video_len"][()] if "video_len" in g else None,
                )

        return cls(
            name=str(a["name"]),
            dataset=str(a["dataset"]),
            features=str(a["features"]),
            class_names=names,
            embeddings=emb,
            legacy_embeddings=legacy,
            split_classes=split_classes,
            split_sizes=split_sizes,
            audio_dim=int(a["audio_dim"]),
            video_dim=int(a["video_dim"]),
            fingerprint=str(a["fingerprint"]),
            loader=load,
            source=str(a.get("source", "")),
            temporal=bool(int(a.get("temporal", 0))),
        )
