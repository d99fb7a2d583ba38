"""Where a run computes: its device, its determinism, and the machine that made its numbers.

A CPU run is bit-reproducible for a seed, a command and a thread count (see
:func:`make_deterministic`), but not across machines: another CPU model (its vector
units decide which matrix-product kernels MKL and torch dispatch to) or another torch
build rounds the last bits differently, and the difference grows over training into
another trajectory. Every result therefore records the :func:`hardware` it ran on and
its torch version, so that a leaderboard cell can say when it pools seeds from several
machines, and a reader knows which machine reproduces a seed to the bit.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from avbench.errors import ConfigError


def make_deterministic(threads: int, device: torch.device) -> None:
    """Same seed, same numbers: ``threads`` torch CPU threads and torch's deterministic algorithms.

    On the CPU the one operation found to reduce in a thread-scheduled order is the
    backward of row gathers with repeated rows by advanced indexing (``index_put_``
    with accumulation, e.g. in-batch negatives ``x[neg_index]``): with 2 threads two
    runs differed from the first step. Deterministic mode makes it sort-based, so a
    run is bit-identical at a given thread count. The methods' row gathers that carry
    gradients go through ``index_select`` (``methods.layers.rows``), whose backward
    adds rows in index order: the same numbers with or without deterministic mode.
    Across thread counts floating-point reductions (matrix products, norms, BatchNorm
    statistics) are split differently and results differ in the last bits, growing
    over training; that is why the thread count is a run setting (``threads``, default
    1) recorded in the configuration. On CUDA the deterministic mode warns instead of
    failing where an operation has no deterministic kernel.
    """
    if threads < 1:
        raise ConfigError(f"setting threads={threads!r}: expected a positive integer")
    torch.set_num_threads(int(threads))
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)


@contextmanager
def torch_settings_restored() -> Iterator[None]:
    """Give back torch's thread count and deterministic mode as they were on entry.

    A run sets both for itself (:func:`make_deterministic`); a library caller (a
    notebook that runs the protocol, then trains something else) gets its own back,
    also when the run fails; and ``CUBLAS_WORKSPACE_CONFIG``, which a CUDA run sets where it
    was unset, is unset again.
    """
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace


def pick_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available on this machine; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ConfigError(f"device {device!r}: expected cpu or cuda")
    return torch.device(device)


def _cpuinfo(path: str | os.PathLike = "/proc/cpuinfo") -> dict[str, str]:
    """Linux's /proc/cpuinfo as one dict, each field's first value ({} where there is none).

    A machine has one CPU model, so the first value of a field is every processor's;
    some fields sit in a block of their own (ARM's ``Hardware``, s390's header).
    """
    fields: dict[str, str] = {}
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields.setdefault(key.strip(), value.strip())
    return fields


def _darwin_brand() -> str:
    """macOS's CPU name (``sysctl machdep.cpu.brand_string``: "Apple M3 Pro", "Intel(R) Core(TM) i9-9880H ...")."""
    try:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def cpu_name(cpuinfo: dict[str, str] | None = None) -> str:
    """The CPU model as precisely as the system says it.

    A virtual machine often reports a family name only ("AMD EPYC"), which covers
    several microarchitectures; the x86 family, model and stepping numbers tell them
    apart (family 25 model 1 is Zen 3, model 17 Zen 4; Skylake-SP and Cascade Lake
    differ in stepping only). Other architectures name the CPU in their own fields:
    ARM's implementer and part numbers, POWER's ``cpu``, RISC-V's ``uarch``, s390's
    machine type; macOS its brand string.
    """
    if cpuinfo is None:
        return _this_cpu()
    info = cpuinfo
    arch = platform.machine() or "unknown architecture"
    name = info.get("model name") or info.get("cpu") or info.get("uarch") or info.get("Hardware") or ""
    ids = []
    if info.get("cpu family") and info.get("model"):
        ids.append(f"family {info['cpu family']} model {info['model']}"
                   + (f" stepping {info['stepping']}" if info.get("stepping") else ""))
    if info.get("CPU implementer") and info.get("CPU part"):
        ids.append(f"implementer {info['CPU implementer']} part {info['CPU part']}")
    s390 = re.search(r"machine\s*=\s*(\w+)", info.get("processor 0", ""))
    if s390:
        name = name or info.get("vendor_id", "")
        ids.append(f"machine {s390.group(1)}")
    if not name and platform.system() == "Darwin":
        name = _darwin_brand()
    if not name:
        name = platform.processor() or "unknown CPU"
    return " ".join(name.split()) + f" ({', '.join([arch, *ids])})"


@functools.cache
def _this_cpu() -> str:
    return cpu_name(_cpuinfo())


def hardware(device: torch.device) -> str:
    """The machine a run computes on, as results record it.

    CPU: the CPU model (:func:`cpu_name`) and the vector instruction set torch's
    kernels dispatch to (``torch.backends.cpu.get_cpu_capability``: a virtual machine
    may hide AVX-512 from one CPU model and not from another). GPU: its name and
    architecture (compute capability, or the gfx target on ROCm) and the CUDA or ROCm
    version torch was built with.
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        if getattr(torch.version, "hip", None):
            arch = getattr(torch.cuda.get_device_properties(index), "gcnArchName", "unknown gfx")
            return f"{name} ({arch}, ROCm {torch.version.hip})"
        major, minor = torch.cuda.get_device_capability(index)
        return f"{name} (sm_{major}{minor}, CUDA {torch.version.cuda})"
    return f"{cpu_name()} {torch.backends.cpu.get_cpu_capability()}"
