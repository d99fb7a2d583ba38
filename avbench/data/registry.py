"""Where benchmarks live and how names resolve.

Names: ``synthetic`` (built in) and imported variants ``<dataset>-<features>``
(``ucf-main``, ``ucf-cls``, ``activitynet-main``, ...); a bare dataset name
(``ucf``) means ``-main``. Extracted benchmarks (``avbench data extract``) are
known by the name they were given (``ucf-extracted``, ``kitchen-sounds``, ...):
any other lower-case name of letters, digits, ``.``, ``_`` and ``-``. Imported
and extracted files live in ``$AVBENCH_HOME/datasets`` (default ``~/.avbench``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from avbench.data.benchmark import Benchmark
from avbench.data.layout import DATASETS, FEATURES
from avbench.errors import DataError

BUILTIN = {
    "synthetic": "built-in synthetic benchmark shaped like ActivityNet-GZSL (99/51/50 classes), averaged 512-d "
                 "features; text explains only part of each class, audio weaker than video",
    "synthetic-clipclap": "the same class structure with CLIP/CLAP shapes (video 512, audio 1024, text 1536)",
    "synthetic-temporal": "the same generative model with UCF-GZSL's 30/12/9 classes and per-second feature "
                          "sequences (3-8 steps)",
}


def avbench_home(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    return Path(os.environ.get("AVBENCH_HOME") or "~/.avbench").expanduser()


# the file of a stored (imported or extracted) benchmark: <home>/datasets/<name><SUFFIX>
SUFFIX = ".h5"
_EXTRACTED_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def reserved_name(key: str) -> bool:
    """Names an extracted benchmark cannot take: built-in, bare dataset and imported-variant names."""
    return _syntactic(key)[1] in ("builtin", "imported")


def check_extracted_name(name: str) -> str:
    """The name an extracted benchmark is stored under (lower case), or a DataError saying what is wrong."""
    key = name.strip().lower()
    if not _EXTRACTED_NAME.fullmatch(key):
        raise DataError(f"--name {name!r}: expected up to 64 letters, digits, '.', '_' or '-', starting with a letter "
                        "or digit")
    if reserved_name(key):
        raise DataError(f"--name {name!r} is reserved for a built-in or imported benchmark (`avbench data import`); "
                        "choose another, e.g. ucf-extracted")
    return key


def _known() -> str:
    return ", ".join(list(BUILTIN) + [f"{d}[-{'|'.join(FEATURES)}]" for d in DATASETS])


def _syntactic(name: str) -> tuple[str, str]:
    """(key, kind) with kind builtin | imported | extracted | invalid, from the name alone."""
    key = name.strip().lower()
    if key in BUILTIN:
        return key, "builtin"
    if key in DATASETS:
        return f"{key}-main", "imported"
    ds, _, feat = key.partition("-")  # features may hold a hyphen: ucf-temporal-main
    if ds in DATASETS and feat in FEATURES:
        return key, "imported"
    if _EXTRACTED_NAME.fullmatch(key):
        return key, "extracted"
    return key, "invalid"


def canonical_name(name: str, home: str | os.PathLike | None = None) -> str:
    """The benchmark's canonical name; an extracted benchmark's name must exist in ``home``."""
    key, kind = _syntactic(name)
    if kind in ("builtin", "imported"):
        return key
    if kind == "extracted" and (avbench_home(home) / "datasets" / f"{key}{SUFFIX}").is_file():
        return key
    raise DataError(f"unknown dataset {name!r}; expected one of {_known()}, or the name of a benchmark made by "
                    "`avbench data extract --name NAME`")


def dataset_path(name: str, home: str | os.PathLike | None = None) -> Path:
    """Where the benchmark of this name is (or would be) stored; the file need not exist."""
    key, kind = _syntactic(name)
    if kind == "invalid":
        raise DataError(f"unknown dataset {name!r}; expected one of {_known()}, or an extracted benchmark's name")
    return avbench_home(home) / "datasets" / f"{key}{SUFFIX}"


def load_benchmark(name: str, home: str | os.PathLike | None = None) -> Benchmark:
    key, kind = _syntactic(name)
    if kind == "builtin":
        from avbench.data.synthetic import synthetic_benchmark

        return synthetic_benchmark(variant=key)
    path = dataset_path(key, home)
    if not path.is_file():
        if kind == "extracted":
            canonical_name(name, home)  # raises: unknown dataset
        ds, _, feat = key.partition("-")
        raise DataError(
            f"dataset {key!r} is not imported (no {path}); run: avbench data import --root DIR --dataset {ds} --features {feat}"
        )
    return Benchmark.open(path)


def _sequences(b: Benchmark) -> str:
    """How a per-second benchmark's sequences were stored (TCAF's reference mode needs them whole)."""
    if not b.temporal:
        return ""
    crop = b.sequence_crop
    return ("sequences whole, " if crop == 0 else "sequence crop not recorded, " if crop is None
            else f"sequences centre-cropped to {crop} steps, ")


def list_benchmarks(home: str | os.PathLike | None = None) -> list[dict]:
    """Every known name with whether it is available and where from."""
    rows = [{"name": k, "status": "built in", "detail": v} for k, v in BUILTIN.items()]
    for ds, info in DATASETS.items():
        for feat in FEATURES:
            path = dataset_path(f"{ds}-{feat}", home)
            if path.is_file():
                try:
                    b = Benchmark.open(path)
                    detail = (
                        f"{b.num_classes} classes, audio {b.audio_dim}-d, video {b.video_dim}-d, "
                        f"{_sequences(b)}fingerprint {b.fingerprint}"
                    )
                    status = "imported"
                except DataError as e:
                    status, detail = "unreadable", str(e)
            else:
                status, detail = "not imported", f"{info.title}: avbench data import --root DIR --dataset {ds} --features {feat}"
            rows.append({"name": f"{ds}-{feat}", "status": status, "detail": detail})
    folder = avbench_home(home) / "datasets"
    for path in sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []:
        key, kind = _syntactic(path.stem)
        if kind != "extracted" or key != path.stem:
            continue
        try:
            b = Benchmark.open(path)
            status = "extracted"
            detail = (f"{b.num_classes} classes, audio {b.audio_dim}-d, video {b.video_dim}-d, text {b.text_dim}-d, "
                      f"{b.features} features, {b.settings_dataset} settings, {_sequences(b)}"
                      f"fingerprint {b.fingerprint}")
        except DataError as e:
            status, detail = "unreadable", str(e)
        rows.append({"name": key, "status": status, "detail": detail})
    return rows
