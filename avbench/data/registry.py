"""Where benchmarks live and how names resolve.

Names: ``synthetic`` (built in) and imported variants ``<dataset>-<features>``
(``ucf-main``, ``ucf-cls``, ``activitynet-main``, ...); a bare dataset name
(``ucf``) means ``-main``. Imported files live in ``$AVBENCH_HOME/datasets``
(default ``~/.avbench``).
"""

from __future__ import annotations

import os
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


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    if key in BUILTIN:
        return key
    if key in DATASETS:
        return f"{key}-main"
    ds, _, feat = key.partition("-")  # features may hold a hyphen: ucf-temporal-main
    if ds in DATASETS and feat in FEATURES:
        return key
    known = ", ".join(list(BUILTIN) + [f"{d}[-{'|'.join(FEATURES)}]" for d in DATASETS])
    raise DataError(f"unknown dataset {name!r}; expected one of {known}")


def dataset_path(name: str, home: str | os.PathLike | None = None) -> Path:
    return avbench_home(home) / "datasets" / f"{canonical_name(name)}.h5"


def load_benchmark(name: str, home: str | os.PathLike | None = None) -> Benchmark:
    key = canonical_name(name)
    if key in BUILTIN:
        from avbench.data.synthetic import synthetic_benchmark

        return synthetic_benchmark(variant=key)
    path = dataset_path(key, home)
    if not path.is_file():
        ds, _, feat = key.partition("-")
        raise DataError(
            f"dataset {key!r} is not imported (no {path}); run: avbench data import --root DIR --dataset {ds} --features {feat}"
        )
    return Benchmark.open(path)


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
                        f"fingerprint {b.fingerprint}"
                    )
                    status = "imported"
                except DataError as e:
                    status, detail = "unreadable", str(e)
            else:
                status, detail = "not imported", f"{info.title}: avbench data import --root DIR --dataset {ds} --features {feat}"
            rows.append({"name": f"{ds}-{feat}", "status": status, "detail": detail})
    return rows
