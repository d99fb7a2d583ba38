"""How the trainer reads a split's features: resident on the run's device, or streamed from the file.

A split that fits the run's memory budget is loaded once and kept on the device
(as before: a batch is a row gather on the device). A split that does not fit is
read from the benchmark file as training goes: each batch reads only its own
videos (``os.pread`` of contiguous rows, :class:`~avbench.data.ragged.DiskRows`),
one batch ahead in a background thread, and evaluation reads contiguous chunks.

Sequences (temporal features) are kept without padding either way; a batch is
padded to its own longest sequence when it is taken. Both ways build the same
tensors (same values, same shapes, zeros as padding), so a run gives the same
metrics resident or streamed (tested).

``memory_budget`` (bytes, ``--memory-budget``): the feature bytes a stage may keep
resident. The default is a quarter of the machine's memory (on a GPU also at most
half of the device's memory): streaming costs TCAF nothing measurable (full-size
ActivityNet per-second features, one stage-1 epoch with validation: 908 s resident,
879 s streamed; ``benchmarks/scale.py``), while keeping a 7 GB split resident takes
7 GB more of the machine.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch

from avbench.data.ragged import Ragged, Rows, load_rows
from avbench.errors import ConfigError

EVAL_CHUNK_BYTES = 256 << 20  # padded float32 bytes of one evaluation chunk of sequences (both modalities)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_bytes(text) -> int:
    """``"4GB"``, ``"512M"``, ``"1.5g"`` or a number of bytes."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = int(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise ConfigError(f"memory budget {text!r}: expected a size such as 4GB, 512MB or a number of bytes")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < 1:
        raise ConfigError(f"memory budget {text!r}: expected a positive size")
    return value


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def default_budget(device: torch.device) -> int:
    """A quarter of the machine's memory; on a GPU also at most half of the device's memory."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 << 30
    budget = ram // 4
    if device.type == "cuda":
        budget = min(budget, torch.cuda.get_device_properties(device).total_memory // 2)
    return int(budget)


class Features:
    """One modality of a split for the trainer (see the module docstring)."""

    def __init__(self, x, device: torch.device, resident: bool):
        self.device = device
        self.ragged = isinstance(x, Ragged)
        self.resident = bool(resident)
        self.width = int(x.shape[-1])
        if self.ragged:
            self.lengths = torch.as_tensor(x.lengths, dtype=torch.long)
            self.max_len = int(x.lengths.max()) if len(x) else 0
        self._n = len(x)
        if not resident:
            self.x = x
        elif self.ragged:
            self.values = torch.as_tensor(load_rows(x.values), device=device)
            self.offsets_dev = torch.as_tensor(x.offsets[:-1], device=device)
            self.lengths_dev = self.lengths.to(device)
        else:
            self.t = x.to(device) if isinstance(x, torch.Tensor) else torch.as_tensor(load_rows(x), device=device)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, key) -> torch.Tensor:
        """Rows as float32 on the device (padded for sequences): a slice or an index tensor."""
        if isinstance(key, slice) and key.step in (None, 1):
            a, b, _ = key.indices(self._n)
            return self.rows(a, b)[0]
        idx = torch.as_tensor(key, dtype=torch.long)
        return self.take(idx.to(self.device) if self.resident else idx.cpu())[0]

    # -- resident -------------------------------------------------------------------
    def _pad_on_device(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lens = self.lengths_dev[idx]
        T = int(lens.max()) if len(lens) else 0
        steps = torch.arange(T, device=self.device)
        valid = steps[None, :] < lens[:, None]
        rows = torch.where(valid, self.offsets_dev[idx][:, None] + steps[None, :], 0)
        out = torch.where(valid[..., None], self.values[rows].float(), 0.0)
        return out, lens

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rows ``idx`` (a long tensor on the device for resident data, on the CPU otherwise) as float32
        on the device, with lengths for sequences (padded to the longest)."""
        if self.resident:
            if self.ragged:
                return self._pad_on_device(idx)
            x = self.t.index_select(0, idx)  # x[idx]; index_select is several times faster on the CPU
            return (x if x.dtype == torch.float32 else x.float()), None
        return self._to_device(*self.read(idx.cpu().numpy()))

    def rows(self, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Videos ``a:b`` (evaluation chunks)."""
        if self.resident and not self.ragged:
            x = self.t[a:b]
            return (x if x.dtype == torch.float32 else x.float()), None
        idx = torch.arange(a, b)
        return self.take(idx.to(self.device) if self.resident else idx)

    # -- streamed -------------------------------------------------------------------
    def read(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Host arrays of rows ``idx`` read from the file: float32 [B, D], or [B, T, D] and lengths."""
        if self.ragged:
            return self.x.padded(idx, dtype=np.float32)
        rows = self.x.take(idx) if isinstance(self.x, Rows) else np.asarray(self.x)[idx]
        return rows.astype(np.float32, copy=False), None

    def _to_device(self, x: np.ndarray, lens: np.ndarray | None):
        t = torch.from_numpy(x).to(self.device)
        return t, (None if lens is None else torch.from_numpy(np.asarray(lens, dtype=np.int64)).to(self.device))

    def batch_bytes(self, batch: int) -> int:
        """Padded float32 bytes of ``batch`` rows at the longest sequence (the worst case)."""
        return batch * (self.max_len if self.ragged else 1) * self.width * 4


def eval_chunks(audio: Features, video: Features, chunk: int) -> list[tuple[int, int]]:
    """Video ranges for evaluation: ``chunk`` videos, fewer for long sequences (a chunk's padded
    bytes stay under ``EVAL_CHUNK_BYTES``). A function of the data only, so resident and streamed
    runs score the same chunks."""
    n = len(audio)
    if not audio.ragged:
        return [(i, min(n, i + chunk)) for i in range(0, n, chunk)]
    per_video = (audio.max_len * audio.width + video.max_len * video.width) * 4
    step = max(1, min(chunk, EVAL_CHUNK_BYTES // max(1, per_video)))
    return [(i, min(n, i + step)) for i in range(0, n, step)]


class Prefetcher:
    """Reads the next batch's rows from the file while the current one trains (one thread)."""

    def __init__(self, parts: list[Features]):
        self.parts = parts
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avbench-read")

    def _read(self, pos: np.ndarray, neg: np.ndarray):
        return [(f.read(pos), f.read(neg)) for f in self.parts]

    def iterate(self, pos: torch.Tensor, neg: torch.Tensor) -> Iterator[list]:
        pos_np, neg_np = pos.numpy(), neg.numpy()
        n = len(pos_np)
        pending = self.pool.submit(self._read, pos_np[0], neg_np[0]) if n else None
        for b in range(n):
            host = pending.result()
            pending = self.pool.submit(self._read, pos_np[b + 1], neg_np[b + 1]) if b + 1 < n else None
            yield [(f._to_device(*p), f._to_device(*q)) for f, (p, q) in zip(self.parts, host)]

    def close(self) -> None:
        self.pool.shutdown(wait=True)
