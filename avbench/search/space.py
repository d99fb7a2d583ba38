"""Hyperparameter search spaces: ``search_spaces/<method>.yaml``.

    method: avca
    parameters:
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      dropout_encoder: {type: float, low: 0.0, high: 0.5}
      batch_size: {type: categorical, choices: [64, 128, 256]}
      depth: {type: int, low: 1, high: 3}
    datasets:                # per-dataset overrides of single parameters
      vggsound:
        batch_size: {type: categorical, choices: [32, 64, 128]}

Every key must be a setting of the method (see ``avbench run --set``); a malformed
space is a one-line error naming the file and key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from avbench.errors import ConfigError

TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None


def spaces_dir() -> Path:
    env = os.environ.get("AVBENCH_SEARCH_SPACES")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for base in (here.parents[2], Path.cwd()):
        if (base / "search_spaces").is_dir():
            return base / "search_spaces"
    return here.parents[2] / "search_spaces"


def _file_name(method: str) -> str:
    return f"{method.lower()}.yaml"


def _param(path: Path, where: str, name: str, spec) -> Param:
    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{path}: {where}.{name}: {msg}")

    if not isinstance(spec, dict):
        raise bad("expected a mapping like {type: float, low: 0.0, high: 1.0}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise bad(f"type {kind!r}: expected one of {', '.join(TYPES)}")
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices"}
    if unknown:
        raise bad(f"unknown field(s) {', '.join(sorted(unknown))}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise bad("categorical needs a non-empty list 'choices'")
        return Param(name, kind, choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    for field_name, v in (("low", low), ("high", high)):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise bad(f"{field_name}={v!r}: expected a number")
    if kind == "int" and (int(low) != low or int(high) != high):
        raise bad(f"int range {low}..{high}: expected integers")
    if not low < high:
        raise bad(f"low={low} must be below high={high}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise bad(f"log={log!r}: expected true or false")
    if log and low <= 0:
        raise bad(f"log scale needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None and (not isinstance(step, (int, float)) or step <= 0):
        raise bad(f"step={step!r}: expected a positive number")
    return Param(name, kind, float(low) if kind == "float" else int(low), float(high) if kind == "float" else int(high),
                 log, step)


def load_space(method: str, dataset: str | None = None, folder: str | os.PathLike | None = None,
               known: set[str] | None = None) -> dict[str, Param]:
    """The space of ``method`` with ``dataset``'s overrides applied, validated."""
    import yaml

    path = Path(folder or spaces_dir()) / _file_name(method)
    if not path.is_file():
        raise ConfigError(f"{path}: no search space for method {method!r}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters"), dict) or not doc["parameters"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'parameters' mapping")
    if doc.get("method", method).lower() != method.lower():
        raise ConfigError(f"{path}: method {doc.get('method')!r} does not match the file's method {method!r}")
    unknown_top = set(doc) - {"method", "parameters", "datasets"}
    if unknown_top:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown_top))}")
    if known is None:
        from avbench.protocol.config import resolve_config

        known = set(resolve_config(method, dataset or "ucf", "main", {}))
    space = {}
    for name, spec in doc["parameters"].items():
        if name not in known:
            raise ConfigError(f"{path}: parameters.{name}: not a setting of {method} (known: {', '.join(sorted(known))})")
        space[name] = _param(path, "parameters", name, spec)
    overrides = doc.get("datasets") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path}: datasets: expected a mapping dataset -> parameters")
    for ds, params in overrides.items():
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: datasets.{ds}: expected a mapping of parameters")
        for name, spec in params.items():
            if name not in known:
                raise ConfigError(f"{path}: datasets.{ds}.{name}: not a setting of {method}")
            p = _param(path, f"datasets.{ds}", name, spec)
            if dataset is not None and ds == dataset:
                space[name] = p
    return space
