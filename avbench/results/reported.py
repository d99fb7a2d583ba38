"""Published numbers, kept as data in ``leaderboards/reported/*.yaml``.

Each file: ``source``, ``features``, ``protocol``, ``text_order`` and ``results``
(method -> dataset -> {S, U, HM, ZSL}, ×100). The files ship inside the
repository; ``AVBENCH_REPORTED`` may point at another folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from avbench.errors import DataError

REQUIRED = ("source", "features", "results")
METRIC_KEYS = ("S", "U", "HM", "ZSL")


def leaderboards_dir(sub: str, env: str) -> Path:
    """``leaderboards/<sub>`` of the source tree (or of the working directory), or ``$<env>``."""
    override = os.environ.get(env)
    if override:
        return Path(override)
    here = Path(__file__).resolve()
    for base in (here.parents[2], Path.cwd()):
        cand = base / "leaderboards" / sub
        if cand.is_dir():
            return cand
    return here.parents[2] / "leaderboards" / sub


def reported_dir() -> Path:
    return leaderboards_dir("reported", "AVBENCH_REPORTED")


def load_reported(folder: str | os.PathLike | None = None) -> list[dict]:
    import yaml

    folder = Path(folder) if folder else reported_dir()
    if not folder.is_dir():
        raise DataError(f"{folder}: no folder of reported results (leaderboards/reported/*.yaml)")
    out = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise DataError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(doc, dict):
            raise DataError(f"{path}: expected a mapping with keys {', '.join(REQUIRED)}")
        for key in REQUIRED:
            if key not in doc:
                raise DataError(f"{path}: missing key {key!r}")
        if not isinstance(doc["results"], dict):
            raise DataError(f"{path}: key 'results' must map method -> dataset -> metrics")
        for method, per_ds in doc["results"].items():
            if not isinstance(per_ds, dict):
                raise DataError(f"{path}: results.{method} must map dataset -> metrics")
            for ds, metrics in per_ds.items():
                if not isinstance(metrics, dict):
                    raise DataError(f"{path}: results.{method}.{ds} must map metric -> number")
                for k, v in metrics.items():
                    if k not in METRIC_KEYS or not isinstance(v, (int, float)):
                        raise DataError(
                            f"{path}: results.{method}.{ds}.{k}={v!r}: expected one of {', '.join(METRIC_KEYS)} with a number"
                        )
        doc["file"] = str(path)
        out.append(doc)
    return out
