"""One benchmark variant (e.g. UCF-GZSL with SeLaVi features) as avbench holds it.

A :class:`Benchmark` knows its class list, the class-embedding matrix (built by
name, plus the public code's misaligned order for comparison), which classes each
split holds and a content fingerprint. Feature tensors of a split are read only
when :meth:`Benchmark.split` asks for them, so a caller that never asks for a
test split never has test features in memory.

On disk a benchmark is one HDF5 file (format 2)::

    /                       attrs: format, name, dataset, features, fingerprint, dtype, ...
    /classes/names          [C] utf-8
    /classes/embeddings     [C, E] float32, row c = embedding of class c by name
    /classes/embeddings_legacy  [C, E] float32, the public code's order
    /splits/<split>/audio   [N, Da] averaged features, or [S, Da] all steps of the split's
                            sequences concatenated (temporal features, no padding)
    /splits/<split>/audio_offsets [N + 1] int64 (temporal only: sequence i is rows offsets[i]:offsets[i+1])
    /splits/<split>/video, video_offsets  likewise
    /splits/<split>/labels  [N] int64 (index into /classes/names)
    /splits/<split>/video_ids [N] utf-8

Feature values are float32, or float16 when imported with ``--dtype float16`` (the
dtype is part of the fingerprint). They are stored with contiguous layout, so a
split too large for memory is read row by row from the file (:class:`DiskRows`).
Format 1 files (temporal features zero-padded to one length) are still read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from avbench.data.ragged import DiskRows, Ragged, Rows, load_rows
from avbench.errors import DataError

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
DTYPES = ("float32", "float16")

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

    Averaged features are [N, D] (a numpy array, or :class:`DiskRows` when read
    lazily). Temporal features (per-second sequences) are :class:`Ragged`; a
    zero-padded [N, T, D] array with ``audio_len`` / ``video_len`` is accepted and
    converted. ``audio_len`` / ``video_len`` [N] are the sequence lengths.
    """

    name: str
    audio: object
    video: object
    labels: np.ndarray
    video_ids: np.ndarray
    audio_len: np.ndarray | None = None
    video_len: np.ndarray | None = None

    def __post_init__(self):
        for mod in ("audio", "video"):
            x, lens = getattr(self, mod), getattr(self, f"{mod}_len")
            if isinstance(x, np.ndarray) and x.ndim == 3:
                if lens is None:
                    raise DataError(f"split {self.name}: padded {mod} sequences need {mod}_len")
                x = Ragged.from_padded(x, lens, dtype=x.dtype if x.dtype == np.float16 else np.float32)
                object.__setattr__(self, mod, x)
            if isinstance(x, Ragged):
                object.__setattr__(self, f"{mod}_len", x.lengths)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.labels)

    @property
    def temporal(self) -> bool:
        return isinstance(self.audio, Ragged)

    @property
    def nbytes(self) -> int:
        """Bytes of its feature values as stored (no padding)."""
        return _nbytes(self.audio) + _nbytes(self.video)

    @property
    def on_disk(self) -> bool:
        return any(isinstance(x, Rows) or isinstance(x, Ragged) and x.on_disk for x in (self.audio, self.video))

    def resident(self) -> "Split":
        """The same split with every feature value in memory."""
        if not self.on_disk:
            return self
        load = lambda x: x.resident() if isinstance(x, Ragged) else load_rows(x)  # noqa: E731
        return Split(self.name, load(self.audio), load(self.video), self.labels, self.video_ids,
                     self.audio_len, self.video_len)

    def averaged(self) -> "Split":
        """Mean over the valid time steps (a temporal split as averaged features)."""
        if not self.temporal:
            return self
        return Split(self.name, self.audio.mean(), self.video.mean(), self.labels, self.video_ids)


def _nbytes(x) -> int:
    if isinstance(x, (Ragged, Rows)):
        return int(x.nbytes)
    return int(np.asarray(x).nbytes)


def rows_bytes(x, dtype, chunk_rows: int = 1 << 16) -> Iterable[bytes]:
    """The bytes of ``x`` (rows [S, D], in memory or on disk) in ``dtype``, a chunk at a time."""
    n = len(x)
    for a in range(0, n, chunk_rows):
        block = x.read(a, min(n, a + chunk_rows)) if isinstance(x, Rows) else x[a : a + chunk_rows]
        yield np.ascontiguousarray(block, dtype=dtype).tobytes()


def hash_split(h, name: str, s: Split, dtype: str = "float32") -> None:
    """Feed one stored split into the fingerprint (format 1's order for averaged float32 data)."""
    h.update(name.encode())
    for x in (s.audio, s.video):
        for chunk in rows_bytes(x.values if isinstance(x, Ragged) else x, dtype):
            h.update(chunk)
    h.update(np.ascontiguousarray(s.labels, dtype=np.int64).tobytes())
    h.update("\n".join(map(str, s.video_ids)).encode())
    for lens in (s.audio_len, s.video_len):
        if lens is not None:
            h.update(np.ascontiguousarray(lens, dtype=np.int64).tobytes())


def fingerprint_of(class_names, embeddings, legacy, splits: Mapping[str, Split], dtype: str = "float32") -> str:
    """sha256 over everything that can change a result: names, embeddings, features, their dtype."""
    h = hashlib.sha256()
    if dtype != "float32":  # float32 benchmarks keep the fingerprints of earlier versions
        h.update(f"dtype={dtype};".encode())
    h.update("\n".join(class_names).encode())
    h.update(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(legacy, dtype=np.float32).tobytes())
    for name in STORED_SPLITS:
        hash_split(h, name, splits[name], dtype)
    return h.hexdigest()[:16]


def concat_splits(name: str, parts: list[Split]) -> Split:
    temporal = parts[0].temporal
    cat = (lambda xs: Ragged.concat(xs)) if temporal else (lambda xs: np.concatenate([load_rows(x) for x in xs]))
    return Split(
        name=name,
        audio=cat([p.audio for p in parts]),
        video=cat([p.video for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        video_ids=np.concatenate([np.asarray(p.video_ids) for p in parts]),
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
        loader: Callable[..., Split],
        source: str = "",
        temporal: bool = False,
        dtype: str = "float32",
        split_bytes: Mapping[str, int] | None = None,
        extra: Mapping[str, str] | None = None,
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
        self._loader = loader  # loader(name, lazy) -> Split
        self.temporal = bool(temporal)  # per-second sequences instead of averaged [N, D] features
        self.dtype = str(dtype)  # how feature values are stored: float32 or float16
        self.split_bytes = dict(split_bytes or {})  # stored bytes of each split's feature values
        if self.split_bytes and "stage_2_train" not in self.split_bytes:
            self.split_bytes["stage_2_train"] = sum(self.split_bytes[p] for p in STAGE_2_TRAIN_PARTS)
        self.extra = dict(extra or {})  # further attributes of the file (e.g. how it was extracted)
        self.path: Path | None = None  # the file it was opened from (None: in memory)
        self.loaded: list[str] = []  # which splits were read, in order (for audits)
        self.budget: dict = {}  # protocol settings this benchmark suggests (e.g. a small epoch budget)

    # -- access -----------------------------------------------------------
    @property
    def settings_dataset(self) -> str:
        """The published dataset whose per-dataset method settings apply: the dataset itself, or for
        a benchmark of other classes (``avbench data extract``) the one it was built after."""
        return self.extra.get("settings_from") or self.dataset

    @property
    def sequence_crop(self) -> int | None:
        """How many steps a per-second benchmark's sequences were centre-cropped to when it was
        written (``--max-len``; 0: kept whole). None for averaged features, and for a file that does
        not record it (written before avbench recorded its crop)."""
        value = self.extra.get("max_len")
        return int(value) if self.temporal and value is not None else None

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

    def split(self, name: str, lazy: bool = False) -> Split:
        """The split's videos; ``lazy``: feature values stay in the file until rows are read."""
        if name not in SPLITS:
            raise DataError(f"split {name!r}: expected one of {', '.join(SPLITS)}")
        self.loaded.append(name)
        if name == "stage_2_train":  # its parts read once, straight into one array when not lazy
            both = concat_lazy(name, [self._loader(p, True) for p in STAGE_2_TRAIN_PARTS])
            return both if lazy else both.resident()
        return self._loader(name, lazy)

    def recomputed_fingerprint(self) -> str:
        """The fingerprint of the values stored now (every split read once, a chunk at a time).

        A file records its fingerprint when it is written, and opening it trusts that
        record; a file edited or damaged since would keep its old data version, and its
        results would be pooled with those of the data it was. ``avbench data verify``
        compares the two."""
        splits = {k: self._loader(k, True) for k in STORED_SPLITS}
        return fingerprint_of(self.class_names, self._embeddings["by-name"], self._embeddings["legacy"], splits,
                              self.dtype)

    def nbytes(self, name: str) -> int:
        """Stored bytes of a split's feature values (what keeping it in memory costs)."""
        if name not in self.split_bytes:
            raise DataError(f"split {name!r}: expected one of {', '.join(SPLITS)}")
        return int(self.split_bytes[name])

    def summary(self) -> dict:
        return {
            "name": self.name,
            "classes": self.num_classes,
            "audio_dim": self.audio_dim,
            "video_dim": self.video_dim,
            "text_dim": self.text_dim,
            "temporal": self.temporal,
            "dtype": self.dtype,
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
        dtype: str = "float32",
        extra: Mapping[str, str] | None = None,
    ) -> "Benchmark":
        """An in-memory benchmark (synthetic data, or one about to be saved)."""
        missing = [s for s in STORED_SPLITS if s not in splits]
        if missing:
            raise DataError(f"benchmark {name}: missing split(s) {', '.join(missing)}")
        if dtype not in DTYPES:
            raise DataError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        legacy = embeddings if legacy_embeddings is None else np.ascontiguousarray(legacy_embeddings, dtype=np.float32)
        held = {k: _as_dtype(splits[k], dtype) for k in STORED_SPLITS}
        fp = fingerprint_of(class_names, embeddings, legacy, held, dtype)
        first = held["stage_1_train"]
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
            loader=lambda split, lazy=False: held[split],
            source=source,
            temporal=first.temporal,
            dtype=dtype,
            split_bytes={k: s.nbytes for k, s in held.items()},
            extra=extra,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the benchmark to one HDF5 file, atomically (temporary files + rename)."""
        from avbench.data.writer import BenchmarkWriter

        with BenchmarkWriter(path, dtype=self.dtype) as w:
            for name in STORED_SPLITS:
                s = self._loader(name, False)
                w.add(name, s.audio, s.video, s.labels, s.video_ids)
            out = w.finish(
                name=self.name, dataset=self.dataset, features=self.features, class_names=self.class_names,
                embeddings=self._embeddings["by-name"], legacy_embeddings=self._embeddings["legacy"],
                source=self.source, extra=self.extra,
            )
        if out.fingerprint != self.fingerprint:  # the file's own hash must equal the in-memory one
            raise DataError(f"{path}: fingerprint {out.fingerprint} of the written file differs from {self.fingerprint}")
        return out.path

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Benchmark":
        """Open a saved benchmark; only metadata is read until a split is asked for."""
        import h5py

        path = Path(path)
        try:
            with h5py.File(path, "r") as f:
                fmt = int(f.attrs.get("format", -1))
                if fmt not in READABLE_FORMATS:
                    raise DataError(
                        f"{path}: format {f.attrs.get('format')!r}, expected {FORMAT_VERSION}; re-run `avbench data import`"
                    )
                a = dict(f.attrs)
                names = [n for n in f["classes/names"].asstr()[()]]
                emb = f["classes/embeddings"][()]
                legacy = f["classes/embeddings_legacy"][()]
                split_classes = {k: f[f"splits/{k}"].attrs["classes"] for k in STORED_SPLITS}
                split_sizes = {k: int(f[f"splits/{k}/labels"].shape[0]) for k in STORED_SPLITS}
                split_bytes = {k: int(f[f"splits/{k}/audio"].nbytes + f[f"splits/{k}/video"].nbytes)
                               for k in STORED_SPLITS}
                split_classes["stage_2_train"] = np.unique(
                    np.concatenate([split_classes[p] for p in STAGE_2_TRAIN_PARTS])
                )
                split_sizes["stage_2_train"] = sum(split_sizes[p] for p in STAGE_2_TRAIN_PARTS)
        except (OSError, KeyError) as e:
            raise DataError(f"{path}: not a readable avbench benchmark file ({e})") from None
        temporal = bool(int(a.get("temporal", 0)))
        crop = str(a.get("x_max_len", "0"))
        if not crop.isdigit():
            raise DataError(f"{path}: attribute x_max_len={crop!r}: expected a number of steps (0: whole sequences)")

        def load(name: str, lazy: bool = False) -> Split:
            return read_split(path, name, fmt, temporal, lazy)

        bench = cls(
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
            temporal=temporal,
            dtype=str(a.get("dtype", "float32")),
            split_bytes=split_bytes,
            extra={k[len("x_"):]: str(v) for k, v in a.items() if k.startswith("x_")},
        )
        bench.path = path
        return bench


def read_split(path: Path, name: str, fmt: int, temporal: bool, lazy: bool = False) -> Split:
    """One stored split of a benchmark file (format ``fmt``); ``lazy``: feature values stay in the file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            g = f[f"splits/{name}"]
            common = dict(name=name, labels=g["labels"][()], video_ids=g["video_ids"].asstr()[()])
            if fmt == 1:  # zero-padded sequences with lengths
                return Split(audio=g["audio"][()], video=g["video"][()],
                             audio_len=g["audio_len"][()] if "audio_len" in g else None,
                             video_len=g["video_len"][()] if "video_len" in g else None, **common)
            feats = {}
            for mod in ("audio", "video"):
                ds = g[mod]
                x = _disk_rows(ds) if lazy else ds[()]
                feats[mod] = Ragged(x, g[f"{mod}_offsets"][()]) if temporal else x
            return Split(**feats, **common)
    except (OSError, KeyError, DataError) as e:
        raise DataError(f"{path}: split {name}: {e}; re-run `avbench data import`") from None


def _disk_rows(ds) -> DiskRows:
    offset = ds.id.get_offset()
    if offset is None and ds.chunks is None and ds.compression is None:
        return np.zeros(ds.shape, dtype=ds.dtype)  # contiguous, never written (e.g. no rows): its fill value
    if offset is None or ds.chunks is not None or ds.compression is not None:
        raise DataError(f"dataset {ds.name} is not stored contiguously")
    return DiskRows(Path(ds.file.filename), offset, ds.shape, ds.dtype)


def _as_dtype(s: Split, dtype: str) -> Split:
    """``s`` with feature values in ``dtype`` (in memory)."""
    def conv(x):
        if isinstance(x, Ragged):
            return x if x.values.dtype == dtype else Ragged(load_rows(x.values).astype(dtype), x.offsets)
        x = load_rows(x)
        return x if x.dtype == dtype else np.ascontiguousarray(x, dtype=dtype)
    return Split(s.name, conv(s.audio), conv(s.video), np.asarray(s.labels, dtype=np.int64), s.video_ids)


def concat_lazy(name: str, parts: list[Split]) -> Split:
    """Several lazily read splits as one, without reading their values (stage 2's training split)."""
    if not any(p.on_disk for p in parts):
        return concat_splits(name, parts)
    from avbench.data.ragged import ConcatRows

    def cat(xs):
        if isinstance(xs[0], Ragged):
            values = ConcatRows([x.values for x in xs])
            return Ragged(values, np.r_[0, np.cumsum(np.concatenate([x.lengths for x in xs]))])
        return ConcatRows(xs)

    return Split(name, cat([p.audio for p in parts]), cat([p.video for p in parts]),
                 np.concatenate([p.labels for p in parts]), np.concatenate([np.asarray(p.video_ids) for p in parts]))
