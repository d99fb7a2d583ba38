"""Feature rows in memory or on disk, and variable-length sequences without padding.

- :class:`DiskRows` is an ``[S, D]`` array stored contiguously in a file (an HDF5
  dataset with contiguous layout), read with ``os.pread``: a read copies only the
  rows asked for into process memory (no memory map whose pages would count towards
  the process's resident set), and ``pread`` releases the GIL, so a prefetch thread
  can read while torch computes.
- :class:`Ragged` holds N sequences of per-second features as all their steps
  concatenated (``values`` [S, D], in memory or a :class:`DiskRows`) plus offsets
  [N + 1]; a batch is padded to its own longest sequence when it is taken
  (:meth:`Ragged.padded`), so padding is never stored.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from avbench.errors import DataError


class Rows:
    """A read-only ``[S, D]`` array whose rows are read on demand (``read(start, stop)``)."""

    ndim = 2
    shape: tuple[int, int]
    dtype: np.dtype

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, key):
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(self.shape[0])
            return self.read(start, stop)
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self.shape[0] if key < 0 else 0)
            return self.read(i, i + 1)[0]
        return self.take(np.asarray(key))

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows at ``index`` (any order, repeats allowed); runs of consecutive rows are read at once."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        out = np.empty((len(index), self.shape[1]), dtype=self.dtype)
        if not len(index):
            return out
        order = np.argsort(index, kind="stable")
        s = index[order]
        breaks = np.flatnonzero(np.diff(s) != 1) + 1
        tmp = np.empty((0, self.shape[1]), dtype=self.dtype)
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(s)]):
            first, last = int(s[lo]), int(s[hi - 1])
            if last - first + 1 == hi - lo:  # a run without repeats
                if tmp.shape[0] < hi - lo:
                    tmp = np.empty((hi - lo, self.shape[1]), dtype=self.dtype)
                self.read(first, last + 1, out=tmp[: hi - lo])
                out[order[lo:hi]] = tmp[: hi - lo]
            else:  # repeated rows: read the distinct span once
                span = self.read(first, last + 1)
                out[order[lo:hi]] = span[s[lo:hi] - first]
        return out

    def __array__(self, dtype=None, copy=None):
        a = self.read(0, self.shape[0])
        return a if dtype is None else a.astype(dtype, copy=False)




class DiskRows(Rows):
    """A read-only ``[S, D]`` array at byte ``offset`` of ``path`` (C order, little endian)."""

    def __init__(self, path: str | os.PathLike, offset: int, shape: tuple[int, int], dtype):
        self.path = str(path)
        self.offset = int(offset)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self._row = self.shape[1] * self.dtype.itemsize
        self._fd: int | None = None
        self._pid = -1

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_fd", "_pid")}

    def __setstate__(self, state):
        self.__dict__.update(state, _fd=None, _pid=-1)

    def __del__(self):
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``start:stop`` as a new array (or into ``out``, a C-contiguous [stop-start, D] array)."""
        start, stop = max(0, int(start)), min(self.shape[0], int(stop))
        n = max(0, stop - start)
        if out is None:
            out = np.empty((n, self.shape[1]), dtype=self.dtype)
        if n:
            want = n * self._row
            buf = memoryview(out.reshape(-1).view(np.uint8))[:want]
            got = os.preadv(self._file(), [buf], self.offset + start * self._row)
            if got != want:
                raise DataError(f"{self.path}: file truncated (read {got} of {want} bytes at row {start})")
        return out


class ConcatRows(Rows):
    """Several row arrays (in memory or :class:`DiskRows`) read as one, without copying them."""

    def __init__(self, parts):
        self.parts = list(parts)
        widths = {int(p.shape[1]) for p in self.parts}
        if len(widths) != 1:
            raise DataError(f"concatenated rows: widths {sorted(widths)} differ")
        self.dtype = np.dtype(self.parts[0].dtype)
        self.starts = np.r_[0, np.cumsum([len(p) for p in self.parts])]
        self.shape = (int(self.starts[-1]), widths.pop())

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        start, stop = max(0, int(start)), min(self.shape[0], int(stop))
        if out is None:
            out = np.empty((max(0, stop - start), self.shape[1]), dtype=self.dtype)
        for i, p in enumerate(self.parts):
            lo, hi = max(start, int(self.starts[i])), min(stop, int(self.starts[i + 1]))
            if lo < hi:
                a, b = lo - int(self.starts[i]), hi - int(self.starts[i])
                if isinstance(p, Rows):
                    p.read(a, b, out=out[lo - start : hi - start])
                else:
                    out[lo - start : hi - start] = p[a:b]
        return out


def centre_window(n: int, max_len: int | None) -> tuple[int, int]:
    """The steps ``lo:hi`` of a sequence of ``n`` that a centre crop to ``max_len`` keeps (all if None)."""
    if max_len is None or n <= max_len:
        return 0, n
    lo = (n - max_len) // 2
    return lo, lo + max_len


def load_rows(x) -> np.ndarray:
    """An in-memory array of ``x`` (a numpy array or :class:`Rows`)."""
    return x.read(0, len(x)) if isinstance(x, Rows) else np.asarray(x)


class Ragged:
    """N variable-length sequences: ``values`` [S, D] (all steps in order) and ``offsets`` [N + 1].

    Shaped like the padded array it replaces (``ndim`` 3, ``shape`` (N, longest, D)),
    so code that asks whether features are temporal keeps working.
    """

    ndim = 3

    def __init__(self, values, offsets):
        self.values = values
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or self.offsets[0] != 0:
            raise DataError("ragged offsets: expected [N + 1] starting at 0")
        if int(self.offsets[-1]) != len(values):
            raise DataError(f"ragged offsets end at {int(self.offsets[-1])} but there are {len(values)} rows")
        self.lengths = np.diff(self.offsets)

    # -- construction -----------------------------------------------------------
    @classmethod
    def from_padded(cls, x: np.ndarray, lengths: np.ndarray, dtype=np.float32) -> "Ragged":
        x, lengths = np.asarray(x), np.asarray(lengths, dtype=np.int64)
        if x.ndim != 3 or len(lengths) != x.shape[0]:
            raise DataError(f"padded sequences: expected [N, T, D] with N lengths, got {x.shape} and {lengths.shape}")
        if len(lengths) and (lengths.min() < 1 or lengths.max() > x.shape[1]):
            raise DataError(f"padded sequences: lengths must be in 1..{x.shape[1]}")
        valid = np.arange(x.shape[1])[None, :] < lengths[:, None]
        return cls(np.ascontiguousarray(x[valid], dtype=dtype), np.r_[0, np.cumsum(lengths)])

    @classmethod
    def from_list(cls, seqs: Sequence[np.ndarray], dtype=np.float32) -> "Ragged":
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        values = np.concatenate(seqs).astype(dtype, copy=False) if len(seqs) else np.zeros((0, 0), dtype)
        return cls(np.ascontiguousarray(values), np.r_[0, np.cumsum(lengths)])

    @staticmethod
    def concat(parts: Sequence["Ragged"]) -> "Ragged":
        values = np.concatenate([load_rows(p.values) for p in parts])
        return Ragged(values, np.r_[0, np.cumsum(np.concatenate([p.lengths for p in parts]))])

    # -- shape --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def shape(self) -> tuple[int, int, int]:
        longest = int(self.lengths.max()) if len(self.lengths) else 0
        return (len(self.lengths), longest, int(self.values.shape[1]))

    @property
    def dtype(self):
        return self.values.dtype

    @property
    def nbytes(self) -> int:
        return int(self.values.shape[0]) * int(self.values.shape[1]) * self.values.dtype.itemsize

    @property
    def on_disk(self) -> bool:
        return isinstance(self.values, Rows)

    def resident(self) -> "Ragged":
        return Ragged(load_rows(self.values), self.offsets) if self.on_disk else self

    # -- access -------------------------------------------------------------------
    def sequence(self, i: int) -> np.ndarray:
        return np.asarray(self.values[int(self.offsets[i]) : int(self.offsets[i + 1])])

    def rows_of(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row numbers of every step of the selected sequences in order, their lengths)."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        lens = self.lengths[index]
        starts = self.offsets[index]
        total = int(lens.sum())
        first = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens)
        return first + np.arange(total), lens

    def padded(self, index: np.ndarray | None = None, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
        """([B, T, D] zero-padded to the longest selected sequence, lengths [B])."""
        if index is None:
            index = np.arange(len(self))
        rows, lens = self.rows_of(index)
        steps = self.values.take(rows) if isinstance(self.values, Rows) else np.asarray(self.values)[rows]
        T = int(lens.max()) if len(lens) else 0
        out = np.zeros((len(lens), T, self.values.shape[1]), dtype=dtype)
        out[np.arange(T)[None, :] < lens[:, None]] = steps
        return out, lens

    def take(self, index: np.ndarray) -> "Ragged":
        rows, lens = self.rows_of(index)
        steps = self.values.take(rows) if isinstance(self.values, Rows) else np.asarray(self.values)[rows]
        return Ragged(steps, np.r_[0, np.cumsum(lens)])

    def mean(self, chunk_rows: int = 1 << 20) -> np.ndarray:
        """[N, D] float32 mean over each sequence's steps, reading ``chunk_rows`` steps at a time."""
        N, D = len(self), int(self.values.shape[1])
        out = np.zeros((N, D), dtype=np.float64)
        S = int(self.offsets[-1])
        for a in range(0, S, chunk_rows):
            b = min(S, a + chunk_rows)
            block = np.asarray(self.values[a:b], dtype=np.float64)
            first = int(np.searchsorted(self.offsets, a, side="right")) - 1
            last = int(np.searchsorted(self.offsets, b - 1, side="right")) - 1
            seq_of_row = np.repeat(np.arange(first, last + 1),
                                   np.minimum(self.offsets[first + 1 : last + 2], b) - np.maximum(self.offsets[first : last + 1], a))
            _segment_add(out, seq_of_row, block)
        return (out / np.maximum(self.lengths, 1)[:, None]).astype(np.float32)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Ragged sequences have no dense array; use .padded() or .mean()")


def _segment_add(out: np.ndarray, seg: np.ndarray, block: np.ndarray) -> None:
    """out[seg[i]] += block[i] for sorted ``seg`` (contiguous segments), with reduceat."""
    starts = np.r_[0, np.flatnonzero(np.diff(seg)) + 1]
    out[seg[starts]] += np.add.reduceat(block, starts, axis=0)
