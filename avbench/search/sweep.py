"""Sweeps: Ray Tune + Optuna over stage 1 of the protocol, finals to the store, MLflow logs.

    avbench sweep --method avca --dataset activitynet --trials 40 --search-seeds 2 --seeds 3

This module is the driver: the sweep's settings (``SweepSpec``), the search space
as Ray Tune domains, trial resources, the Optuna storage and ``sweep()``. What a
Ray worker runs is in ``search.trial``, the MLflow logging in ``search.tracking``,
the live view in ``search.live``.

- Seeds: trials train stage 1 with the *search seeds* 0..K-1 (``search_seeds=K``)
  and report the per-epoch mean over them; the best configuration's finals use
  the S following seeds K..K+S-1 (``seeds=S``), so no final repeats a run the
  search selected on (its max over trials would bias that final upwards).
- Each trial reports, every epoch, the validation metrics after calibrated
  stacking (``ray.tune.report``); the objective is the best validation HM so far.
  Optuna's TPE (Ray Tune's ``OptunaSearch``) proposes configurations, ASHA stops
  poor trials early. The test split is never loaded by a trial.
- When the search ends, the best configuration runs the full protocol for the S
  final seeds (Ray tasks); those results go to the results store as one *entry*
  named after the sweep (``entry_kind="sweep"``, with the search seeds).
- Resume: the Ray experiment lives in ``<home>/sweeps/<name>`` and the Optuna
  study in a journal file beside it (or a PostgreSQL URL given by ``--storage``).
  Rerunning the same command restores the experiment with ``Tuner.restore``:
  finished trials are kept, unfinished ones restart, the study keeps its history;
  finals already in the store (same entry, configuration and seed) are not rerun.
  Ray Tune resumes an experiment with the settings it was started with, so a
  rerun that changes them (trials, search seeds, settings, data) is refused.
- MLflow: see ``search.tracking`` (a parent run per sweep, a child per trial and
  per final; the best so far in the parent's tags).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from avbench.protocol.feed import parse_bytes
from avbench.errors import ConfigError
from avbench.search.trial import OBJECTIVE, run_final, run_trial

SETTINGS_FILE = "avbench_sweep.json"  # what the experiment was started with (checked on resume)


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


# --------------------------------------------------------------------------- driver
def _optuna_storage(url: str | None, default_path: Path):
    import optuna

    from avbench.results.locks import schema_lock
    from avbench.search.tracking import OPTUNA_LOCK_KEY

    if url:
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        try:
            with schema_lock(url, OPTUNA_LOCK_KEY):  # two sweeps may create the study tables at once
                return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except Exception as e:
            raise ConfigError(f"--storage {url}: cannot open the Optuna storage ({str(e).splitlines()[0]})") from None
    from optuna.storages.journal import JournalFileBackend

    default_path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(default_path)))


def _check_settings(exp_path: Path, name: str, settings: dict, restoring: bool) -> None:
    """Record what a new experiment starts with; on resume, refuse other settings (Ray Tune would ignore them)."""
    path = exp_path / SETTINGS_FILE
    settings = json.loads(json.dumps(settings, sort_keys=True, default=str))
    if restoring and path.is_file():
        started = json.loads(path.read_text())
        for key, value in settings.items():
            was = started.get(key, value)
            if was == value:
                continue
            if isinstance(value, dict) and isinstance(was, dict):  # name the setting that differs
                sub = next(k for k in sorted({*value, *was}) if value.get(k) != was.get(k))
                key, value, was = f"{key}.{sub}", value.get(sub), was.get(sub)
            raise ConfigError(
                f"sweep {name}: {key}={value!r}, but the sweep was started with {key}={was!r} and Ray Tune resumes "
                "an experiment as it was started; rerun with the same settings or use another --name"
            )
        return
    exp_path.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2, sort_keys=True))


def sweep(spec: SweepSpec, console=None, live: bool = True, on_final=None) -> dict:
    """Run (or resume) a sweep; returns a summary with the best config and the final results."""
    t_start = time.time()
    import logging
    import warnings

    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")  # save experiment state often: kill -9 loses little
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import mlflow  # noqa: F401  (imported before its loggers are quietened: it configures them on import)
    import optuna
    import ray
    import torch
    from ray import tune

    from avbench.data.registry import avbench_home, canonical_name, load_benchmark
    from avbench.methods import get_method
    from avbench.protocol.presets import resolve_protocol
    from avbench.protocol.run import RunResult, resolve_config
    from avbench.results.store import Store, config_hash, git_revision
    from avbench.search.live import LiveView
    from avbench.search.space import load_space
    from avbench.search.tracking import SweepCallback, Tracker, activate, deactivate

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for noisy in ("mlflow", "alembic", "ray", "ray.tune"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    trial_seeds, final_seeds = seed_plan(spec.search_seeds, spec.seeds)
    home = avbench_home(spec.home).resolve()
    dataset = canonical_name(spec.dataset, home)
    bench = load_benchmark(dataset, home)
    method = get_method(spec.method).name
    preset, options, mode = resolve_protocol(method, spec.protocol, bench.settings_dataset, bench.features)
    space = load_space(spec.method, bench.settings_dataset)
    # each trial and final uses its CPUs as torch threads; the count is a run setting (results are
    # bit-reproducible for a given count), so the finals record it in their configuration
    if spec.memory_budget:
        parse_bytes(spec.memory_budget)  # a malformed size is one line before Ray starts
    base = {**bench.budget, "threads": max(1, int(spec.cpus_per_trial)), **spec.overrides}
    # bad settings fail here, not in a trial
    fixed = resolve_config(method, bench.settings_dataset, bench.features, base, protocol_options=options)
    epochs = int(fixed["epochs"])
    # a fixed --set wins over the space, and so does a setting the protocol fixes
    space = {k: p for k, p in space.items() if k not in spec.overrides and k not in options}
    if not space:
        raise ConfigError(f"sweep {spec.method}: every parameter of the search space is fixed by --set")
    cuda = torch.cuda.is_available()
    resources = trial_resources(spec.cpus_per_trial, spec.gpus_per_trial, cuda)
    gpus = resources["gpu"]
    name = spec.sweep_name()
    sweeps_dir = home / "sweeps"
    exp_path = sweeps_dir / name
    resumed = tune.Tuner.can_restore(str(exp_path))
    _check_settings(exp_path, name, {
        "method": method, "dataset": bench.dataset, "features": bench.features, "protocol": spec.protocol,
        "text_order": spec.text_order, "settings": fixed, "searched": sorted(space), "trials": spec.trials,
        "search_seeds": spec.search_seeds, "data_fingerprint": bench.fingerprint,
    }, resumed)
    store = Store(spec.db, home)  # fail early if the store is unreachable, or its entry of this name is not ours
    for row in store.rows(columns=["entry_kind", "method", "dataset"], entry=name)[:1]:
        if (row["entry_kind"], row["method"], row["dataset"]) != ("sweep", method, bench.dataset):
            raise ConfigError(f"--name {name}: the results store's entry {name!r} holds {row['entry_kind']} results of "
                              f"{row['method']} on {row['dataset']}; choose another --name")

    tags = {
        "avbench.method": method,
        "avbench.dataset": dataset,
        "avbench.protocol": spec.protocol,
        "avbench.data_fingerprint": bench.fingerprint,
        "avbench.git_revision": git_revision() or "unknown",
    }
    tracking = spec.tracking_uri or f"sqlite:///{home / 'mlflow.db'}"
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    tracker_init = pool.submit(Tracker, tracking, name, tags)

    started_ray = not ray.is_initialized()
    if started_ray:
        from avbench.search.cluster import start_ray

        start_ray(spec.address)
    tracker = None
    try:
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
        if len(nodes) > 1:  # a cluster: storage path and data must be the same everywhere
            from avbench.search.cluster import check_cluster

            check_cluster(dataset, str(home), bench.fingerprint, str(sweeps_dir))
        total_cpus = ray.cluster_resources().get("CPU", os.cpu_count() or 1)
        max_conc = spec.max_concurrent or max(1, int(total_cpus // max(spec.cpus_per_trial, 1e-9)))

        ctx = {
            "method": method,
            "dataset": dataset,
            "home": str(home),
            "fingerprint": bench.fingerprint,
            "protocol": spec.protocol,
            "text_order": spec.text_order,
            "overrides": base,
            "search_seeds": trial_seeds,
            "device": "cuda" if gpus > 0 else "cpu",
            "threads": int(fixed["threads"]),
            "epochs": epochs,
            "memory_budget": spec.memory_budget,
            "concurrent": max(max_conc, spec.shared_slots or 0),
        }
        tracker = tracker_init.result()  # MLflow was set up while Ray started
        pool.shutdown()
        tracker.set_tags(tracker.parent, {
            "avbench.entry": name,
            "avbench.search_seeds": _seeds(trial_seeds),
            "avbench.final_seeds": _seeds(final_seeds),  # may grow when a rerun asks for more --seeds
            "avbench.max_concurrent": str(max_conc),  # trials at once: part of how the search went
        })
        view = LiveView(spec.trials, console=console, enabled=live)
        activate(name, tracker, view)  # what the (possibly restored) Tune callback logs to
        tuner = _tuner(spec, name, sweeps_dir, {**tune_space(space), "avbench": ctx}, resources, max_conc,
                       resumed, SweepCallback(name))
        t_search = time.time()
        with view:
            grid = tuner.fit()
        search_s = time.time() - t_search
        known = {r.metrics.get("trial_id") for r in grid if r.metrics}
        known |= {os.path.basename(str(r.path)).removeprefix("trial_") for r in grid if r.path}
        tracker.close_lost_trials(known)
        try:
            best = grid.get_best_result(metric=OBJECTIVE, mode="max", scope="all")
        except RuntimeError:  # no trial reported the objective
            best = None
        if best is None or best.config is None:
            errors = [str(e).strip().splitlines()[-1] for e in grid.errors if str(e).strip()]
            why = f"; e.g. {errors[0]}" if errors else ""
            raise ConfigError(f"sweep {name}: no trial finished (see {exp_path}){why}")
        params = {k: v for k, v in best.config.items() if k != "avbench"}
        trials_done = sum(1 for r in grid if r.metrics)
        trial_nodes = sorted({r.metrics.get("node_id") for r in grid if r.metrics and r.metrics.get("node_id")})
        busy = 0.0
        for r in grid:
            df = r.metrics_dataframe
            if df is not None and "train_seconds" in df:
                busy += float(df["train_seconds"].sum())

        # ---- finals: the best configuration through the whole protocol, on seeds no trial used
        config = resolve_config(method, bench.settings_dataset, bench.features, {**base, **params}, protocol_options=options)
        chash = config_hash(config)
        # tags, not parameters: a resumed sweep may find a new best, and MLflow parameters are immutable
        tracker.set_best(params, float(best.metrics[OBJECTIVE]), trial=best.metrics.get("trial_id"),
                         config_hash=chash)
        existing = {
            r["seed"]: r["id"]
            for r in store.rows(columns=["id", "seed"], entry=name, method=method, dataset=bench.dataset,
                                features=bench.features, protocol=preset, protocol_mode=mode,
                                text_order=spec.text_order, config_hash=chash, data_fingerprint=bench.fingerprint,
                                seed=final_seeds)
        }
        todo = [s for s in final_seeds if s not in existing]
        remote = ray.remote(num_cpus=spec.cpus_per_trial, num_gpus=gpus)(run_final)
        refs = {s: remote.remote(ctx, params, s) for s in todo}
        runs = {  # one MLflow child per final, made now (RUNNING), found again if this final is rerun
            s: tracker.child(f"final-{chash}-{s}", f"final seed {s}",
                             {"avbench.kind": "final", "avbench.final": "true", "avbench.seed": s,
                              "avbench.config_hash": chash, "avbench.search_seeds": _seeds(trial_seeds)},
                             params={**params, "seed": s})
            for s in todo
        }
        finals = []
        t_final = time.time()
        for s, ref in refs.items():
            res = RunResult(**ray.get(ref))
            tracker.log(runs[s], metrics={f"test_{k.lower()}": 100 * getattr(res, k) for k in ("S", "U", "HM", "ZSL")}
                        | {"beta": res.beta, "best_epoch": res.best_epoch})
            tracker.end(runs[s])
            # stored last: a final killed before this line is rerun (reusing its MLflow run), never stored twice
            result_id, _ = store.add(res, mlflow_run_id=runs[s], entry=name, entry_kind="sweep",
                                     search_seeds=trial_seeds)
            finals.append({"seed": s, "result_id": result_id, "HM": 100 * res.HM, "ZSL": 100 * res.ZSL})
            busy += res.seconds
            if on_final:
                on_final(finals[-1])
        final_s = time.time() - t_final
    except BaseException:
        if tracker is not None:
            try:
                tracker.end(tracker.parent, "FAILED")
            except Exception:  # the error that stopped the sweep matters more than MLflow's state
                pass
        raise
    finally:
        deactivate(name)
        if started_ray:
            ray.shutdown()
    tracker.end(tracker.parent)
    summary = {
        "name": name,
        "entry": name,
        "resumed": resumed,
        "experiment": str(exp_path),
        "trials": trials_done,
        "search_seeds": trial_seeds,
        "final_seeds": final_seeds,
        "best_config": params,
        "best_config_hash": chash,
        "best_val_hm": float(best.metrics[OBJECTIVE]),
        "finals": finals,
        "finals_already_stored": sorted(existing),
        "search_seconds": search_s,
        "wall_seconds": time.time() - t_start,
        "busy_seconds": busy,  # inside trial and final training/validation
        "slots": max_conc,
        "nodes": nodes,
        "trial_nodes": trial_nodes,  # nodes that ran the last epoch of some trial
        "final_seconds": final_s,
        "tracking_uri": tracking,
        "parent_run_id": tracker.parent,
    }
    (exp_path / "avbench_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _seeds(seeds: list[int]) -> str:
    return ",".join(map(str, seeds))


def _tuner(spec: SweepSpec, name: str, sweeps_dir: Path, param_space: dict, resources: dict, max_conc: int,
           resumed: bool, callback):
    """A new Ray Tune experiment (Optuna TPE, ASHA), or the interrupted one restored as it was started."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    trainable = tune.with_resources(run_trial, resources)
    if resumed:  # the run config and callback come back from the experiment's saved state
        return tune.Tuner.restore(str(sweeps_dir / name), trainable, resume_unfinished=True, resume_errored=True,
                                  param_space=param_space)
    epochs = int(param_space["avbench"]["epochs"])
    searcher = OptunaSearch(
        metric=OBJECTIVE,
        mode="max",
        study_name=name,
        storage=_optuna_storage(spec.storage, sweeps_dir / f"{name}.optuna.journal"),
        seed=spec.sampler_seed,
    )
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=OBJECTIVE,
            mode="max",
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_conc),
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=max(1, epochs // 4),
                                    reduction_factor=3),
            num_samples=spec.trials,
            reuse_actors=True,  # keep trial worker processes (torch imported once per worker)
            trial_name_creator=lambda t: f"trial_{t.trial_id}",
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(sweeps_dir),
            verbose=0,
            callbacks=[callback],
            failure_config=tune.FailureConfig(max_failures=2),
        ),
    )
