"""Suites: the whole benchmark in one command.

    avbench suite run synthetic          # leaderboards/suites/synthetic.yaml, or a path
    avbench suite status synthetic

A suite (``leaderboards/suites/<name>.yaml``) names methods (or ``all``), datasets,
features, the protocol, trials, final seeds, search seeds and a budget per dataset:

    name: synthetic              # default: the file's stem
    methods: all                 # or [avca, cjme, ...]
    datasets: [synthetic, synthetic-temporal]
    features: main               # for datasets named without features (ucf -> ucf-main)
    protocol: avca2022
    trials: 4
    seeds: 2                     # final seeds per sweep
    search_seeds: 1
    budget:                      # per dataset (or default): settings fixed for every trial
      default: {epochs: 4, batches_per_epoch: 30}
    settings: {}                 # fixed settings for every sweep (optional)
    cpus_per_trial: 1            # optional, as `avbench sweep`

Every (method, dataset) pair is one sweep (``search.sweep_setup``) named
``<suite>.<method>.<dataset>``: its own Optuna study, MLflow parent run and store entry
(the sweep's name). All the sweeps run in one Ray Tune experiment
(``search.suite_tune``): Ray is started once and a few reused worker processes run every
sweep's trials and finals, so no sweep waits for another and no sweep starts a process
of its own. Unless the suite sets ``max_concurrent``, a sweep runs its share of the
slots at once (at least one trial), so its TPE sees its earlier trials while the other
sweeps fill the other slots. A pair that cannot run (a temporal method on averaged
features, a dataset not imported, no search space) is reported and skipped. Rerunning
the suite resumes every unfinished sweep from its Optuna study and the store, and skips
finished ones.

This module reads suite files and plans their sweeps; ``suite_run`` runs them and
``suite_view`` shows their progress.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from avbench.errors import AvbenchError, ConfigError

KEYS = {
    "name": "the suite's name (default: the file's stem)",
    "description": "free text",
    "methods": "`all` or a list of method names",
    "datasets": "a list of dataset names",
    "features": "features of datasets named without them (main, cls, temporal-main, ...)",
    "protocol": "protocol preset or reference",
    "trials": "trials per sweep",
    "seeds": "final seeds per sweep",
    "search_seeds": "seeds each trial trains with",
    "budget": "per dataset (or default): fixed settings such as epochs, batches_per_epoch",
    "settings": "fixed settings of every sweep",
    "cpus_per_trial": "CPUs per trial",
    "gpus_per_trial": "GPU fraction per trial (used only with CUDA)",
    "max_concurrent": "at most this many trials of one sweep at once",
    "text_order": "by-name or legacy",
}


@dataclass
class Suite:
    name: str
    path: Path
    methods: list[str]
    datasets: list[str]
    protocol: str = "avca2022"
    trials: int = 20
    seeds: int = 3
    search_seeds: int = 1
    budget: dict = field(default_factory=dict)  # canonical dataset -> settings
    settings: dict = field(default_factory=dict)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.25
    max_concurrent: int | None = None
    text_order: str = "by-name"
    description: str = ""


@dataclass
class Planned:
    """One (method, dataset) pair of a suite: its sweep, or why it is skipped."""

    method: str
    dataset: str
    name: str
    spec: object | None = None  # SweepSpec
    skip: str | None = None
    settings: dict | None = None  # the settings every trial gets, as the sweep records them
    fingerprint: str | None = None  # the dataset's
    options: dict | None = None  # the protocol options, as the sweep records them


def suites_dir() -> Path:
    from avbench.results.reported import leaderboards_dir

    return leaderboards_dir("suites", "AVBENCH_SUITES")


def suite_path(ref: str) -> Path:
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise ConfigError(f"suite {ref}: no such file")
        return p
    cand = suites_dir() / f"{ref}.yaml"
    if not cand.is_file():
        known = ", ".join(sorted(x.stem for x in suites_dir().glob("*.yaml"))) or "none"
        raise ConfigError(f"suite {ref!r}: no {cand} (suites: {known}; or give a path to a YAML file)")
    return cand


def _positive_int(path, key, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path}: {key}: {value!r}: expected a positive integer")
    return value


def _settings(path, key, value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{path}: {key}: expected a mapping of settings like {{epochs: 10}}")
    return {k.replace("-", "_"): v for k, v in value.items()}


def load_suite(ref: str) -> Suite:
    """A suite from its name (``leaderboards/suites/<name>.yaml``) or a path, validated."""
    import yaml

    from avbench.data.layout import DATASETS, FEATURES
    from avbench.data.registry import BUILTIN, canonical_name
    from avbench.errors import DataError
    from avbench.methods import available_methods
    from avbench.protocol.presets import PROTOCOLS

    path = suite_path(ref)
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {', '.join(KEYS)}")
    unknown = [k for k in doc if k not in KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; expected one of {', '.join(KEYS)}")
    for key in ("methods", "datasets"):
        if key not in doc:
            raise ConfigError(f"{path}: {key}: missing ({KEYS[key]})")
    name = str(doc.get("name") or path.stem)
    if not name or any(c in name for c in "/\\ :") or name.startswith("."):
        raise ConfigError(f"{path}: name: {name!r}: expected a name without spaces, slashes or colons")

    known = available_methods()
    methods = doc["methods"]
    if methods == "all":
        methods = list(known)
    elif isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
        raise ConfigError(f"{path}: methods: expected `all` or a non-empty list of method names")
    methods = [m.lower() for m in methods]  # registry names, as `--method` takes them
    for m in methods:
        if m not in known:
            raise ConfigError(f"{path}: methods: unknown method {m!r}; available: {', '.join(known)}")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"{path}: methods: a method is listed twice")

    features = doc.get("features", "main")
    if features not in FEATURES:
        raise ConfigError(f"{path}: features: {features!r}: expected one of {', '.join(FEATURES)}")

    def dataset_name(d) -> str:
        if not isinstance(d, str):
            raise ConfigError(f"{path}: datasets: {d!r}: expected a dataset name")
        key = d.strip().lower()
        if key in DATASETS:
            key = f"{key}-{features}"
        try:
            return canonical_name(key)
        except DataError as e:
            raise ConfigError(f"{path}: datasets: {e}") from None

    datasets = doc["datasets"]
    if isinstance(datasets, str):
        datasets = [datasets]
    if not isinstance(datasets, list) or not datasets:
        raise ConfigError(f"{path}: datasets: expected a non-empty list of dataset names "
                          f"({', '.join(BUILTIN)}, {', '.join(DATASETS)}, ...)")
    datasets = [dataset_name(d) for d in datasets]
    if len(set(datasets)) != len(datasets):
        raise ConfigError(f"{path}: datasets: a dataset is listed twice")

    protocol = doc.get("protocol", "avca2022")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{path}: protocol: {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    budget_doc = doc.get("budget") or {}
    if not isinstance(budget_doc, dict):
        raise ConfigError(f"{path}: budget: expected a mapping of dataset (or default) to settings")
    default = _settings(path, "budget.default", budget_doc.get("default"))
    budget = {d: dict(default) for d in datasets}
    for key, value in budget_doc.items():
        if key == "default":
            continue
        d = dataset_name(key)
        if d not in budget:
            raise ConfigError(f"{path}: budget: {key!r} is not one of the suite's datasets ({', '.join(datasets)})")
        budget[d].update(_settings(path, f"budget.{key}", value))
    text_order = doc.get("text_order", "by-name")
    if text_order not in ("by-name", "legacy"):
        raise ConfigError(f"{path}: text_order: {text_order!r}: expected by-name or legacy")
    out = Suite(
        name=name, path=path, methods=methods, datasets=datasets, protocol=protocol,
        trials=_positive_int(path, "trials", doc.get("trials", 20)),
        seeds=_positive_int(path, "seeds", doc.get("seeds", 3)),
        search_seeds=_positive_int(path, "search_seeds", doc.get("search_seeds", 1)),
        budget=budget, settings=_settings(path, "settings", doc.get("settings")), text_order=text_order,
        description=str(doc.get("description") or ""),
    )
    for key in ("cpus_per_trial", "gpus_per_trial"):
        if key in doc:
            v = doc[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (key == "cpus_per_trial" and v == 0):
                raise ConfigError(f"{path}: {key}: {v!r}: expected a positive number")
            setattr(out, key, float(v))
    if doc.get("max_concurrent") is not None:
        out.max_concurrent = _positive_int(path, "max_concurrent", doc["max_concurrent"])
    return out


def sweep_name(suite: str, method: str, dataset: str) -> str:
    return f"{suite}.{method}.{dataset}"


def plan(suite: Suite, home=None, db=None, storage=None, tracking_uri=None, address=None) -> list[Planned]:
    """Every (method, dataset) pair: a SweepSpec, or the reason it cannot run (checked as the sweep would)."""
    from avbench.data.registry import load_benchmark
    from avbench.methods import get_method
    from avbench.protocol.presets import resolve_protocol
    from avbench.protocol.config import resolve_config
    from avbench.search.space import load_space
    from avbench.search.sweep import SweepSpec

    out = []
    for dataset in suite.datasets:
        try:
            bench = load_benchmark(dataset, home)
        except AvbenchError as e:
            out += [Planned(m, dataset, sweep_name(suite.name, m, dataset), skip=str(e)) for m in suite.methods]
            continue
        for m in suite.methods:
            item = Planned(m, dataset, sweep_name(suite.name, m, dataset))
            out.append(item)
            cls = get_method(m)
            if cls.inputs == "temporal" and not bench.temporal:
                item.skip = f"{m} needs per-second (temporal) features; {dataset} has averaged ones"
                continue
            overrides = {**suite.settings, **suite.budget.get(dataset, {})}
            try:  # what sweep() checks before it starts Ray: a bad pair fails here, not in a trial
                _, options, _ = resolve_protocol(m, suite.protocol, bench.settings_dataset, bench.features,
                                                 benchmark=bench)
                load_space(m, bench.settings_dataset)
                threads = {"threads": max(1, int(suite.cpus_per_trial))}  # as sweep() fixes them
                item.settings = resolve_config(m, bench.settings_dataset, bench.features,
                                               {**bench.budget, **threads, **overrides}, protocol_options=options)
                item.fingerprint = bench.fingerprint
                item.options = dict(options)
            except AvbenchError as e:
                item.skip = str(e)
                continue
            item.spec = SweepSpec(
                method=m, dataset=dataset, trials=suite.trials, seeds=suite.seeds, search_seeds=suite.search_seeds,
                max_concurrent=suite.max_concurrent, gpus_per_trial=suite.gpus_per_trial,
                cpus_per_trial=suite.cpus_per_trial, address=address, storage=storage, tracking_uri=tracking_uri,
                name=item.name, protocol=suite.protocol, text_order=suite.text_order, overrides=overrides,
                home=str(home) if home else None, db=db,
            )
    return out


def _finished(item: Planned, home: Path, store) -> bool:
    """A sweep whose search ended and whose final seeds are all in the store (nothing left to run)."""
    from avbench.search.resume import SETTINGS_FILE, _normalised
    from avbench.search.sweep_setup import seed_plan

    exp = home / "sweeps" / item.name
    summary, settings = exp / "avbench_summary.json", exp / SETTINGS_FILE
    if not summary.is_file() or not settings.is_file():
        return False
    try:
        started = json.loads(settings.read_text())
        done = json.loads(summary.read_text())
    except ValueError:
        return False
    spec = item.spec
    settings, options = _normalised(item.settings), _normalised(item.options or {})  # as the sweep records them
    if (started.get("trials"), started.get("search_seeds"), started.get("settings"), started.get("data_fingerprint"),
            started.get("protocol_options", {})) != (spec.trials, spec.search_seeds, settings, item.fingerprint, options):
        return False  # changed settings, budget, data or protocol rules: let sweep() say so, never keep it as done
    _, finals = seed_plan(spec.search_seeds, spec.seeds)
    stored = {r["seed"] for r in store.rows(columns=["seed", "config_hash"], entry=item.name)
              if r["config_hash"] == done.get("best_config_hash")}
    return set(finals) <= stored
