"""Write a benchmark file while its features stream in, in bounded memory.

An import hands features to :class:`BenchmarkWriter` class by class
(``add(split, audio, video, labels, ids)``); they are appended as raw rows to
spill files in a private temporary folder beside the target, so memory holds one
class at a time whatever the dataset's size. ``finish`` copies the spill files into
one HDF5 file (contiguous datasets, a chunk at a time), computes the fingerprint by
reading that file back in chunks, and renames it into place. Until that rename
nothing is at the target path; the temporary folder is removed on success, on an
error and on Ctrl-C, and a folder left by a killed import is removed by the next
import of the same file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, NamedTuple

import numpy as np

from avbench.data.benchmark import DTYPES, FORMAT_VERSION, STORED_SPLITS, Split, fingerprint_of, read_split, rows_bytes
from avbench.data.ragged import Ragged
from avbench.errors import DataError

COPY_ROWS_BYTES = 64 << 20  # bytes copied from a spill file into the HDF5 file at a time


class Written(NamedTuple):
    path: Path
    fingerprint: str


class BenchmarkWriter:
    """Stream splits class by class into ``path`` (see the module docstring); a context manager."""

    def __init__(self, path: str | os.PathLike, dtype: str = "float32"):
        if dtype not in DTYPES:
            raise DataError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self._tmp: Path | None = None  # created with the first videos
        self.temporal: bool | None = None
        self.widths: dict[str, int] = {}
        self.meta: dict[str, dict] = {}

    def __enter__(self) -> "BenchmarkWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    @property
    def tmp(self) -> Path:
        if self._tmp is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(self.path)
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.import-{os.getpid()}-", dir=self.path.parent))
        return self._tmp

    # -- streaming in -------------------------------------------------------------
    def add(self, split: str, audio, video, labels, ids) -> None:
        """Append videos to ``split``: features [n, D] (averaged), or :class:`Ragged` / a list of
        [T_i, D] arrays (temporal); labels [n] class ids; ids [n] video ids."""
        if split not in STORED_SPLITS:
            raise DataError(f"split {split!r}: expected one of {', '.join(STORED_SPLITS)}")
        m = self.meta.setdefault(split, {"labels": [], "ids": [], "audio_len": [], "video_len": [], "rows": {}})
        n = len(labels)
        for mod, x in (("audio", audio), ("video", video)):
            temporal = isinstance(x, (Ragged, list, tuple))
            if self.temporal is None:
                self.temporal = temporal
            if temporal != self.temporal:
                raise DataError(f"split {split}: {mod} features mix sequences and averaged vectors")
            if isinstance(x, (list, tuple)):
                x = Ragged.from_list(x, dtype=self.dtype)
            if len(x) != n:
                raise DataError(f"split {split}: {len(x)} {mod} rows for {n} labels")
            values = x.values if isinstance(x, Ragged) else x
            width = int(values.shape[1])
            if self.widths.setdefault(mod, width) != width:
                raise DataError(f"split {split}: {mod} features are {width}-d, earlier ones {self.widths[mod]}-d")
            with open(self.tmp / f"{split}.{mod}.raw", "ab") as fh:
                for chunk in rows_bytes(values, self.dtype):
                    fh.write(chunk)
            m["rows"][mod] = m["rows"].get(mod, 0) + len(values)
            if isinstance(x, Ragged):
                m[f"{mod}_len"].append(x.lengths)
        m["labels"].append(np.asarray(labels, dtype=np.int64))
        m["ids"].append(np.asarray([str(u) for u in ids], dtype=object))

    # -- the file -----------------------------------------------------------------
    def finish(self, *, name: str, dataset: str, features: str, class_names, embeddings, legacy_embeddings=None,
               source: str = "", extra: Mapping[str, str] | None = None) -> Written:
        import h5py

        missing = [s for s in STORED_SPLITS if s not in self.meta]
        if missing:
            raise DataError(f"benchmark {name}: no videos for split(s) {', '.join(missing)}")
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        legacy = embeddings if legacy_embeddings is None else np.ascontiguousarray(legacy_embeddings, dtype=np.float32)
        h5 = self.tmp / "benchmark.h5"
        str_dt = h5py.string_dtype("utf-8")
        with h5py.File(h5, "w") as f:
            f.attrs.update(
                format=FORMAT_VERSION, name=name, dataset=dataset, features=features, fingerprint="",
                audio_dim=self.widths["audio"], video_dim=self.widths["video"], source=source,
                temporal=int(bool(self.temporal)), dtype=self.dtype.name,
            )
            for k, v in (extra or {}).items():
                f.attrs[f"x_{k}"] = str(v)
            g = f.create_group("classes")
            g.create_dataset("names", data=np.array(list(class_names), dtype=object), dtype=str_dt)
            g.create_dataset("embeddings", data=embeddings)
            g.create_dataset("embeddings_legacy", data=legacy)
            sg = f.create_group("splits")
            for split in STORED_SPLITS:
                m = self.meta[split]
                d = sg.create_group(split)
                labels = np.concatenate(m["labels"])
                for mod in ("audio", "video"):
                    rows, width = m["rows"][mod], self.widths[mod]
                    ds = d.create_dataset(mod, shape=(rows, width), dtype=self.dtype)  # contiguous
                    self._copy_spill(self.tmp / f"{split}.{mod}.raw", ds, width)
                    if self.temporal:
                        lens = np.concatenate(m[f"{mod}_len"])
                        d.create_dataset(f"{mod}_offsets", data=np.r_[0, np.cumsum(lens)].astype(np.int64))
                d.create_dataset("labels", data=labels)
                d.create_dataset("video_ids", data=np.concatenate(m["ids"]), dtype=str_dt)
                d.attrs["classes"] = np.unique(labels)
        fingerprint = fingerprint_of(list(class_names), embeddings, legacy, _read_back(h5, self.temporal),
                                     self.dtype.name)
        with h5py.File(h5, "r+") as f:
            f.attrs["fingerprint"] = fingerprint
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(h5, 0o666 & ~umask)  # a data file is shared like any other
        os.replace(h5, self.path)
        return Written(self.path, fingerprint)

    def _copy_spill(self, spill: Path, ds, width: int) -> None:
        rows = ds.shape[0]
        step = max(1, COPY_ROWS_BYTES // max(1, width * self.dtype.itemsize))
        with open(spill, "rb") as fh:
            for a in range(0, rows, step):
                b = min(rows, a + step)
                block = np.fromfile(fh, dtype=self.dtype, count=(b - a) * width)
                if block.size != (b - a) * width:
                    raise DataError(f"{spill}: spill file ends early (row {a})")
                ds[a:b] = block.reshape(b - a, width)
        spill.unlink()  # the disk holds each split's values twice only while it is copied


def _read_back(h5: Path, temporal: bool) -> dict[str, Split]:
    """The written splits with values left in the file (for the fingerprint)."""
    return {split: read_split(h5, split, FORMAT_VERSION, temporal, lazy=True) for split in STORED_SPLITS}


def remove_stale(path: Path) -> None:
    """Remove temporary folders of imports of ``path`` whose process is gone (e.g. killed)."""
    pat = re.compile(re.escape(f".{path.name}.import-") + r"(\d+)-")
    for cand in path.parent.glob(f".{path.name}.import-*"):
        m = pat.match(cand.name)
        if not m or not cand.is_dir():
            continue
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(cand, ignore_errors=True)


__all__ = ["BenchmarkWriter", "Written", "remove_stale"]
