"""A sweep before and after its search: settings, checks, MLflow parent, finals' records, summary.

``avbench sweep`` (``search.sweep``, one Ray Tune experiment per sweep) and ``avbench
suite run`` (``search.suite_tune``, one experiment for all the suite's sweeps) share
this: what a sweep is (``SweepSpec``), what it checks before any trial runs
(``prepare``: the dataset, the protocol, the search space, the settings it was
started with, the store's entry), its MLflow parent run, how the best configuration
becomes finals on seeds no trial used, how a final is recorded (MLflow child, then
the store, last) and the summary file ``<home>/sweeps/<name>/avbench_summary.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from avbench import __version__
from avbench.errors import ConfigError
from avbench.protocol.feed import parse_bytes
from avbench.search.resume import check_settings, optuna_storage

SUMMARY_FILE = "avbench_summary.json"


@dataclass
class SweepSpec:
    method: str
    dataset: str
    trials: int = 20
    seeds: int = 3  # final seeds: search_seeds .. search_seeds + seeds - 1
    search_seeds: int = 1  # trials train with seeds 0 .. search_seeds - 1 and report the mean
    max_concurrent: int | None = None
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    address: str | None = None
    storage: str | None = None  # Optuna storage URL (default: journal file)
    tracking_uri: str | None = None
    name: str | None = None
    protocol: str = "avca2022"
    text_order: str = "by-name"
    overrides: dict = field(default_factory=dict)
    home: str | None = None
    db: str | None = None
    sampler_seed: int = 0
    memory_budget: str | None = None  # per trial (--memory-budget); default: a share of the node's memory
    # trials of all sweeps that may run at once (a suite's sweeps share the slots): the default memory
    # budget is shared by that many; default: this sweep's own concurrency
    shared_slots: int | None = None

    def sweep_name(self) -> str:
        return self.name or f"{self.method}-{self.dataset}-{self.protocol}"


# --------------------------------------------------------------------------- space
def tune_space(space: dict) -> dict:
    """Ray Tune search-space objects for a validated avbench space."""
    from ray import tune

    out = {}
    for name, p in space.items():
        if p.type == "categorical":
            out[name] = tune.choice(list(p.choices))
        elif p.type == "int":
            if p.log:
                out[name] = tune.lograndint(int(p.low), int(p.high) + 1)
            else:
                out[name] = tune.randint(int(p.low), int(p.high) + 1)  # upper bound exclusive
        elif p.log:
            out[name] = tune.qloguniform(p.low, p.high, p.step) if p.step else tune.loguniform(p.low, p.high)
        else:
            out[name] = tune.quniform(p.low, p.high, p.step) if p.step else tune.uniform(p.low, p.high)
    return out


def trial_resources(cpus_per_trial: float, gpus_per_trial: float, cuda: bool) -> dict:
    """Ray resources of one trial: GPU fractions only where CUDA is present."""
    if cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial {cpus_per_trial}: expected a positive number")
    if gpus_per_trial < 0 or gpus_per_trial > 1 and int(gpus_per_trial) != gpus_per_trial:
        raise ConfigError(f"--gpus-per-trial {gpus_per_trial}: expected a fraction in (0, 1] or a whole number")
    return {"cpu": float(cpus_per_trial), "gpu": float(gpus_per_trial) if cuda else 0.0}


def seed_plan(search_seeds: int, seeds: int) -> tuple[list[int], list[int]]:
    """(trial seeds, final seeds): 0..K-1 for the search, the S following ones for the finals (disjoint)."""
    for flag, n in (("--search-seeds", search_seeds), ("--seeds", seeds)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{flag} {n!r}: expected a positive integer")
    return list(range(search_seeds)), list(range(search_seeds, search_seeds + seeds))


def quiet_libraries() -> None:
    """Ray Tune, MLflow, Optuna and alembic log at WARNING; the old Tune console output; MLflow imported
    before its loggers are quietened (it configures them on import)."""
    import logging
    import os
    import warnings

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import mlflow  # noqa: F401
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for noisy in ("mlflow", "alembic", "ray", "ray.tune"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- one sweep
class PreparedSweep:
    """A sweep checked and recorded before any trial runs; then its MLflow parent, finals and summary.

    ``prepare`` does everything that can fail on bad input before Ray starts. ``start``
    opens the MLflow parent run and builds the context every trial and final receives.
    After the search: ``finals_for`` turns the best configuration into the final seeds
    still to run, ``record_final`` logs and stores one final, ``finish`` writes the
    summary.
    """

    def __init__(self, spec: SweepSpec, restoring: bool | None = None, store=None):
        import torch

        from avbench.data.registry import avbench_home, canonical_name, load_benchmark
        from avbench.methods import get_method
        from avbench.protocol.presets import resolve_protocol
        from avbench.protocol.config import resolve_config
        from avbench.results.provenance import code, git_revision
        from avbench.results.store import Store
        from avbench.search.space import load_space

        self.t_start = time.time()
        self.spec = spec
        self.trial_seeds, self.final_seeds = seed_plan(spec.search_seeds, spec.seeds)
        self.home = avbench_home(spec.home).resolve()
        self.dataset = canonical_name(spec.dataset, self.home)
        bench = load_benchmark(self.dataset, self.home)
        self.bench_dataset, self.features, self.fingerprint = bench.dataset, bench.features, bench.fingerprint
        self.settings_dataset = bench.settings_dataset
        self.method = get_method(spec.method).name
        self.preset, self.options, self.mode = resolve_protocol(self.method, spec.protocol, bench.settings_dataset,
                                                                bench.features, benchmark=bench)
        space = load_space(spec.method, bench.settings_dataset)
        # each trial and final uses its CPUs as torch threads; the count is a run setting (results are
        # bit-reproducible for a given count), so the finals record it in their configuration
        if spec.memory_budget:
            parse_bytes(spec.memory_budget)  # a malformed size is one line before Ray starts
        self.base = {**bench.budget, "threads": max(1, int(spec.cpus_per_trial)), **spec.overrides}
        # bad settings fail here, not in a trial
        self.fixed = resolve_config(self.method, bench.settings_dataset, bench.features, self.base,
                                    protocol_options=self.options)
        self.epochs = int(self.fixed["epochs"])
        # a fixed --set wins over the space, and so does a setting the protocol fixes
        self.space = {k: p for k, p in space.items() if k not in spec.overrides and k not in self.options}
        if not self.space:
            raise ConfigError(f"sweep {spec.method}: every parameter of the search space is fixed by --set")
        self.resources = trial_resources(spec.cpus_per_trial, spec.gpus_per_trial, torch.cuda.is_available())
        self.name = spec.sweep_name()
        self.sweeps_dir = self.home / "sweeps"
        self.exp_path = self.sweeps_dir / self.name
        if restoring is None:
            from ray import tune

            restoring = tune.Tuner.can_restore(str(self.exp_path))
        self.resumed = restoring
        check_settings(self.exp_path, self.name, {
            "method": self.method, "dataset": self.bench_dataset, "features": self.features,
            "protocol": spec.protocol, "text_order": spec.text_order, "settings": self.fixed,
            "searched": sorted(self.space), "trials": spec.trials, "search_seeds": spec.search_seeds,
            "data_fingerprint": self.fingerprint, "protocol_options": self.options,
        }, restoring, spec.storage, self.sweeps_dir / f"{self.name}.optuna.journal",
            recorded_since={"protocol_options": {}})
        # fail early if the store is unreachable, or its entry of this name is not ours
        self.store = store if store is not None else Store(spec.db, self.home)
        for row in self.store.rows(columns=["entry_kind", "method", "dataset"], entry=self.name)[:1]:
            if (row["entry_kind"], row["method"], row["dataset"]) != ("sweep", self.method, self.bench_dataset):
                raise ConfigError(f"--name {self.name}: the results store's entry {self.name!r} holds "
                                  f"{row['entry_kind']} results of {row['method']} on {row['dataset']}; "
                                  "choose another --name")
        self.tags = {
            "avbench.method": self.method,
            "avbench.dataset": self.dataset,
            "avbench.protocol": spec.protocol,
            "avbench.data_fingerprint": self.fingerprint,
            "avbench.git_revision": code({"git_revision": git_revision(), "avbench_version": __version__}),
        }
        self.tracking = spec.tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"
        self.tracker = None
        self.ctx: dict = {}
        self.busy = 0.0  # seconds inside trial and final training/validation
        self.finals: list[dict] = []
        self.existing: dict[int, int] = {}  # final seed -> result id already stored when the search ended
        self.best: dict | None = None  # {"params", "value", "trial"}
        self.chash: str | None = None

    def searcher(self):
        """The sweep's Optuna TPE (Ray Tune's OptunaSearch) over its space, its study in the sweep's storage."""
        from ray.tune.search.optuna import OptunaSearch

        from avbench.search.trial import OBJECTIVE

        return OptunaSearch(
            space=tune_space(self.space),
            metric=OBJECTIVE,
            mode="max",
            study_name=self.name,
            storage=optuna_storage(self.spec.storage, self.sweeps_dir / f"{self.name}.optuna.journal"),
            seed=self.spec.sampler_seed,
        )

    def start(self, tracker, max_conc: int) -> dict:
        """With the MLflow parent run open: tag it, and build the context of every trial and final."""
        self.tracker = tracker
        self.max_concurrent = max_conc
        tracker.set_tags(tracker.parent, {
            "avbench.entry": self.name,
            "avbench.search_seeds": _seeds(self.trial_seeds),
            "avbench.final_seeds": _seeds(self.final_seeds),  # may grow when a rerun asks for more --seeds
            "avbench.max_concurrent": str(max_conc),  # trials at once: part of how the search went
        })
        self.ctx = {
            "sweep": self.name,
            "method": self.method,
            "dataset": self.dataset,
            "home": str(self.home),
            "fingerprint": self.fingerprint,
            "protocol": self.spec.protocol,
            "text_order": self.spec.text_order,
            "overrides": self.base,
            "search_seeds": self.trial_seeds,
            "device": "cuda" if self.resources["gpu"] > 0 else "cpu",
            "threads": int(self.fixed["threads"]),
            "epochs": self.epochs,
            "memory_budget": self.spec.memory_budget,
            "concurrent": max(max_conc, self.spec.shared_slots or 0),
        }
        return self.ctx

    def open_tracker(self):
        from avbench.search.tracking import Tracker

        return Tracker(self.tracking, self.name, self.tags)

    # ---- finals: the best configuration through the whole protocol, on seeds no trial used
    def finals_for(self, params: dict, value: float, trial: str | None) -> list[int]:
        """The final seeds still to run for the best configuration (``params``, validation HM ``value``);
        creates their MLflow child runs (RUNNING, found again if a final is rerun)."""
        from avbench.protocol.config import resolve_config
        from avbench.results.rows import config_hash

        self.best = {"params": params, "value": float(value), "trial": trial}
        config = resolve_config(self.method, self.settings_dataset, self.features, {**self.base, **params},
                                protocol_options=self.options)
        self.chash = config_hash(config)
        # tags, not parameters: a resumed sweep may find a new best, and MLflow parameters are immutable
        self.tracker.set_best(params, float(value), trial=trial, config_hash=self.chash)
        self.existing = {
            r["seed"]: r["id"]
            for r in self.store.rows(columns=["id", "seed"], entry=self.name, method=self.method,
                                     dataset=self.bench_dataset, features=self.features, protocol=self.preset,
                                     protocol_mode=self.mode, text_order=self.spec.text_order,
                                     config_hash=self.chash, data_fingerprint=self.fingerprint,
                                     seed=self.final_seeds)
        }
        todo = [s for s in self.final_seeds if s not in self.existing]
        for s in todo:
            self.final_run(s)
        return todo

    def final_run(self, seed: int) -> str:
        """The MLflow child run of the final on ``seed``."""
        return self.tracker.child(
            f"final-{self.chash}-{seed}", f"final seed {seed}",
            {"avbench.kind": "final", "avbench.final": "true", "avbench.seed": seed, "avbench.config_hash": self.chash,
             "avbench.search_seeds": _seeds(self.trial_seeds)},
            params={**self.best["params"], "seed": seed})

    def record_final(self, seed: int, result: dict) -> dict | None:
        """Log one final's test metrics and store it (last: a final killed before this is rerun, reusing its MLflow
        run, never stored twice). Returns its record, or None when the store already held it."""
        from avbench.protocol.result import RunResult
        from avbench.results.provenance import code

        res = RunResult(**result)
        run = self.final_run(seed)
        self.tracker.log(run, metrics={f"test_{k.lower()}": 100 * getattr(res, k) for k in ("S", "U", "HM", "ZSL")}
                         | {"beta": res.beta, "best_epoch": res.best_epoch})
        self.tracker.set_tags(run, {"avbench.hardware": res.hardware or "unknown",
                                    "avbench.torch_version": res.torch_version or "unknown",
                                    **({"avbench.git_revision": code(vars(res))} if res.avbench_version else {})})
        self.tracker.end(run)
        result_id, inserted = self.store.add(res, mlflow_run_id=run, entry=self.name, entry_kind="sweep",
                                             search_seeds=self.trial_seeds)
        self.busy += res.seconds
        if not inserted:  # a final rerun after an interruption that had stored it
            self.existing[seed] = result_id
            return None
        self.finals.append({"seed": seed, "result_id": result_id, "HM": 100 * res.HM, "ZSL": 100 * res.ZSL})
        return self.finals[-1]

    def finish(self, trials: int, search_s: float, final_s: float, nodes: list, trial_nodes: list,
               slots: int) -> dict:
        """The summary (also written to ``<home>/sweeps/<name>/avbench_summary.json``); the parent run ended."""
        self.tracker.end(self.tracker.parent)
        summary = {
            "name": self.name,
            "entry": self.name,
            "resumed": self.resumed,
            "experiment": str(self.exp_path),
            "trials": trials,
            "search_seeds": self.trial_seeds,
            "final_seeds": self.final_seeds,
            "best_config": self.best["params"],
            "best_config_hash": self.chash,
            "best_val_hm": self.best["value"],
            "finals": self.finals,
            "finals_already_stored": sorted(self.existing),
            "search_seconds": search_s,
            "wall_seconds": time.time() - self.t_start,
            "busy_seconds": self.busy,  # inside trial and final training/validation
            "slots": slots,
            "nodes": nodes,
            "trial_nodes": trial_nodes,  # nodes that ran the last epoch of some trial
            "final_seconds": final_s,
            "tracking_uri": self.tracking,
            "parent_run_id": self.tracker.parent,
        }
        self.exp_path.mkdir(parents=True, exist_ok=True)
        (self.exp_path / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))
        return summary

    def fail(self) -> None:
        """Mark the MLflow parent FAILED (the error that stopped the sweep matters more than MLflow's state)."""
        if self.tracker is not None:
            try:
                self.tracker.end(self.tracker.parent, "FAILED")
            except Exception:
                pass


def _seeds(seeds: list[int]) -> str:
    return ",".join(map(str, seeds))
