"""Sweeps: Ray Tune + Optuna over stage 1 of the protocol, finals to the store, MLflow logs.

    avbench sweep --method avca --dataset activitynet --trials 40 --seeds 3

- Each trial runs stage 1 and reports, every epoch, the validation metrics after
  calibrated stacking (``ray.tune.report``); the objective is the best validation
  HM so far. Optuna's TPE (Ray Tune's ``OptunaSearch``) proposes configurations,
  ASHA stops poor trials early. The test split is never loaded by a trial.
- When the search ends, the best configuration runs the full protocol for K
  seeds (Ray tasks); those results go to the results store.
- Resume: the Ray experiment lives in ``<home>/sweeps/<name>`` and the Optuna
  study in a journal file beside it (or a PostgreSQL URL given by ``--storage``).
  Rerunning the same command restores the experiment with ``Tuner.restore``:
  finished trials are kept, unfinished ones restart, the study keeps its history;
  finals already in the store are not rerun.
- MLflow: the driver logs (one place per process): a parent run per sweep, a
  nested child run per trial with its parameters and per-epoch metrics, and a
  child run per final, tagged ``avbench.final``, with test metrics.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from avbench.errors import ConfigError

OBJECTIVE = "best_val_hm"
MLFLOW_LOCK_KEY = 0x6D6C666C  # PostgreSQL advisory locks serialising MLflow's / Optuna's schema creation
OPTUNA_LOCK_KEY = 0x6F70746E


@dataclass
class SweepSpec:
    method: str
    dataset: str
    trials: int = 20
    seeds: int = 3
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


# --------------------------------------------------------------------------- trial (runs in a Ray worker)
def _worker_benchmark(ctx: dict):
    """In a Ray worker: the run's thread count, and the dataset as this node has it (fingerprint checked)."""
    import torch

    from avbench.search.cluster import node_benchmark

    torch.set_num_threads(max(1, int(ctx["threads"])))
    bench, _ = node_benchmark(ctx["dataset"], ctx["home"])
    if bench.fingerprint != ctx["fingerprint"]:
        raise ConfigError(
            f"dataset {ctx['dataset']} on this node has fingerprint {bench.fingerprint}, the sweep uses "
            f"{ctx['fingerprint']}: import the same data on every node"
        )
    return bench


def run_trial(config: dict) -> None:
    import ray
    from ray import tune

    from avbench.protocol.run import run_protocol

    ctx = config["avbench"]
    params = {k: v for k, v in config.items() if k != "avbench"}
    bench = _worker_benchmark(ctx)
    node = ray.get_runtime_context().get_node_id()
    best = {"hm": -1.0, "t": time.perf_counter()}

    def on_epoch(stage, rec, total):
        v = rec.val
        best["hm"] = max(best["hm"], 100 * v["HM"])
        now = time.perf_counter()
        busy, best["t"] = now - best["t"], now
        tune.report(
            {
                OBJECTIVE: best["hm"],
                "val_hm": 100 * v["HM"],
                "val_s": 100 * v["S"],
                "val_u": 100 * v["U"],
                "val_zsl": 100 * v["ZSL"],
                "beta": v["beta"],
                "loss": rec.loss,
                "lr": rec.lr,
                "epoch": rec.epoch,
                "train_seconds": busy,  # time in this epoch's training + validation (for overhead figures)
                "node_id": node,
            }
        )

    run_protocol(
        bench,
        ctx["method"],
        protocol=ctx["protocol"],
        seed=int(ctx["seed"]),
        overrides={**ctx["overrides"], **params},
        text_order=ctx["text_order"],
        device=ctx["device"],
        on_epoch=on_epoch,
        stage1_only=True,
    )


def run_final(ctx: dict, params: dict, seed: int) -> dict:
    """Full protocol for one seed (a Ray task); returns RunResult as a dict."""
    from avbench.protocol.run import run_protocol

    bench = _worker_benchmark(ctx)
    r = run_protocol(
        bench,
        ctx["method"],
        protocol=ctx["protocol"],
        seed=seed,
        overrides={**ctx["overrides"], **params},
        text_order=ctx["text_order"],
        device=ctx["device"],
    )
    return r.to_dict()


# --------------------------------------------------------------------------- MLflow (driver only)
class Tracker:
    """Parent run per sweep, nested child runs per trial and per final (MlflowClient, explicit ids)."""

    def __init__(self, uri: str, sweep: str, tags: dict):
        from mlflow.tracking import MlflowClient

        with _schema_lock(uri, MLFLOW_LOCK_KEY):  # MLflow creates/migrates its tables on first use
            self.client = MlflowClient(tracking_uri=uri)
            exp = self.client.get_experiment_by_name("avbench")
            if exp is None:
                try:
                    self.exp_id = self.client.create_experiment("avbench")
                except Exception:  # created meanwhile by another sweep
                    self.exp_id = self.client.get_experiment_by_name("avbench").experiment_id
            else:
                self.exp_id = exp.experiment_id
        found = self.client.search_runs(
            [self.exp_id], filter_string=f"tags.`avbench.sweep` = '{sweep}' and tags.`avbench.kind` = 'sweep'"
        )
        if found:
            self.parent = found[0].info.run_id
            self.client.update_run(self.parent, status="RUNNING")
        else:
            self.parent = self.client.create_run(
                self.exp_id, run_name=sweep, tags={**tags, "avbench.sweep": sweep, "avbench.kind": "sweep"}
            ).info.run_id
        self.sweep, self.tags = sweep, tags
        self.children: dict[str, str] = {}
        for r in self.client.search_runs([self.exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{self.parent}'"):
            tid = r.data.tags.get("ray.trial_id")
            if tid:
                self.children[tid] = r.info.run_id

    def child(self, key: str, name: str, tags: dict | None = None) -> str:
        if key not in self.children:
            self.children[key] = self.client.create_run(
                self.exp_id,
                run_name=name,
                tags={**self.tags, **(tags or {}), "mlflow.parentRunId": self.parent, "ray.trial_id": key,
                      "avbench.sweep": self.sweep},
            ).info.run_id
        return self.children[key]

    def log(self, run_id: str, metrics: dict | None = None, params: dict | None = None, step: int = 0) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)) for k, v in (params or {}).items()],
        )

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)


class _schema_lock:
    """Serialise a tool's schema creation across processes (MLflow, Optuna create tables on first use):
    a file lock beside a SQLite file, an advisory lock on PostgreSQL."""

    def __init__(self, uri: str, key: int = 0):
        self.uri, self.key, self.fh, self.conn = uri, key, None, None

    def __enter__(self):
        if self.uri.startswith("sqlite:///"):
            import fcntl

            path = Path(self.uri[len("sqlite:///"):]).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(str(path) + ".lock", "w")
            fcntl.flock(self.fh, fcntl.LOCK_EX)
        elif self.uri.startswith(("postgresql", "postgres")):
            from sqlalchemy import create_engine, text

            url = self.uri if "+" in self.uri.split("://")[0] else "postgresql+psycopg://" + self.uri.split("://", 1)[1]
            self.engine = create_engine(url)
            self.conn = self.engine.connect()
            self.conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            import fcntl

            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
        if self.conn is not None:
            from sqlalchemy import text

            self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self.conn.close()
            self.engine.dispose()


def _callback(tracker: Tracker, view: "LiveView"):
    from ray import tune

    class AvbenchCallback(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            rid = tracker.child(trial.trial_id, f"trial {trial.trial_id}", {"avbench.kind": "trial"})
            params = {k: v for k, v in trial.config.items() if k != "avbench"}
            try:
                tracker.log(rid, params=params)
            except Exception:  # params are immutable in MLflow: a restarted trial logs them again
                pass
            view.update(trials)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            rid = tracker.child(trial.trial_id, f"trial {trial.trial_id}", {"avbench.kind": "trial"})
            keys = (OBJECTIVE, "val_hm", "val_s", "val_u", "val_zsl", "beta", "loss", "lr")
            tracker.log(rid, metrics={k: result[k] for k in keys if k in result}, step=int(result.get("epoch", 0)))
            view.update(trials)

        def on_trial_complete(self, iteration, trials, trial, **info):
            tracker.end(tracker.child(trial.trial_id, f"trial {trial.trial_id}"), "FINISHED")
            view.update(trials)

        def on_trial_error(self, iteration, trials, trial, **info):
            tracker.end(tracker.child(trial.trial_id, f"trial {trial.trial_id}"), "FAILED")
            view.update(trials)

    return AvbenchCallback()


# --------------------------------------------------------------------------- live view
class LiveView:
    """Trials done / running / stopped early, best HM so far, elapsed and estimated time."""

    def __init__(self, total: int, console=None, enabled: bool = True):
        from rich.live import Live

        self.total, self.t0 = total, time.time()
        self.best = None
        self.live = Live(self._render({}), console=console, refresh_per_second=2, transient=False) if enabled else None

    def _render(self, counts: dict):
        from rich.table import Table

        t = Table(show_header=False, box=None)
        done = counts.get("done", 0)
        elapsed = time.time() - self.t0
        eta = (elapsed / done * (self.total - done)) if done else None
        t.add_row("trials", f"{done}/{self.total} done · {counts.get('running', 0)} running · "
                            f"{counts.get('stopped', 0)} stopped early · {counts.get('error', 0)} failed")
        t.add_row("best val HM", "–" if self.best is None else f"{self.best:.2f}")
        t.add_row("time", f"{elapsed:.0f} s elapsed" + ("" if eta is None else f" · ~{eta:.0f} s left"))
        return t

    def update(self, trials) -> None:
        counts = {"done": 0, "running": 0, "stopped": 0, "error": 0}
        for tr in trials:
            status = tr.status
            last = tr.last_result or {}
            if OBJECTIVE in last:
                self.best = max(self.best or -1, float(last[OBJECTIVE]))
            if status == "TERMINATED":
                counts["done"] += 1
                epochs = int(tr.config.get("avbench", {}).get("epochs", 0))
                if epochs and int(last.get("training_iteration", epochs)) < epochs:
                    counts["stopped"] += 1
            elif status == "RUNNING":
                counts["running"] += 1
            elif status == "ERROR":
                counts["error"] += 1
                counts["done"] += 1
        self.counts = counts
        if self.live is not None:
            self.live.update(self._render(counts))

    def __enter__(self):
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)


# --------------------------------------------------------------------------- driver
def _optuna_storage(url: str | None, default_path: Path):
    import optuna

    if url:
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        try:
            with _schema_lock(url, OPTUNA_LOCK_KEY):  # two sweeps may create the study tables at once
                return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except Exception as e:
            raise ConfigError(f"--storage {url}: cannot open the Optuna storage ({str(e).splitlines()[0]})") from None
    from optuna.storages.journal import JournalFileBackend

    default_path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(default_path)))


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
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from avbench.data.registry import avbench_home, canonical_name, load_benchmark
    from avbench.protocol.presets import get_preset
    from avbench.protocol.run import RunResult, resolve_config
    from avbench.results.store import Store, config_hash, git_revision
    from avbench.search.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for noisy in ("mlflow", "alembic", "ray", "ray.tune"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    home = avbench_home(spec.home).resolve()
    dataset = canonical_name(spec.dataset)
    bench = load_benchmark(dataset, home)
    get_preset(spec.protocol)
    space = load_space(spec.method, bench.dataset)
    base = {**bench.budget, **spec.overrides}
    resolve_config(spec.method, bench.dataset, bench.features, base)  # bad settings fail here, not in a trial
    epochs = int(resolve_config(spec.method, bench.dataset, bench.features, base)["epochs"])
    space = {k: p for k, p in space.items() if k not in spec.overrides}  # a fixed --set wins over the space
    if not space:
        raise ConfigError(f"sweep {spec.method}: every parameter of the search space is fixed by --set")
    cuda = torch.cuda.is_available()
    resources = trial_resources(spec.cpus_per_trial, spec.gpus_per_trial, cuda)
    gpus = resources["gpu"]
    name = spec.sweep_name()
    sweeps_dir = home / "sweeps"
    exp_path = sweeps_dir / name
    store = Store(spec.db, home)  # fail early if the store is unreachable

    tags = {
        "avbench.method": spec.method,
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
        kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
        if spec.address:
            ray.init(address=spec.address, **kw)
        else:
            ray.init(num_cpus=os.cpu_count(), num_gpus=torch.cuda.device_count() if cuda else 0, **kw)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    if len(nodes) > 1:  # a cluster: storage path and data must be the same everywhere
        from avbench.search.cluster import check_cluster

        check_cluster(dataset, str(home), bench.fingerprint, str(sweeps_dir))
    total_cpus = ray.cluster_resources().get("CPU", os.cpu_count() or 1)
    max_conc = spec.max_concurrent or max(1, int(total_cpus // max(spec.cpus_per_trial, 1e-9)))

    ctx = {
        "method": spec.method,
        "dataset": dataset,
        "home": str(home),
        "fingerprint": bench.fingerprint,
        "protocol": spec.protocol,
        "text_order": spec.text_order,
        "overrides": base,
        "seed": 0,
        "device": "cuda" if gpus > 0 else "cpu",
        "threads": max(1, int(spec.cpus_per_trial)),
        "epochs": epochs,
    }
    tracker = tracker_init.result()  # MLflow was set up while Ray started
    pool.shutdown()
    view = LiveView(spec.trials, console=console, enabled=live)

    trainable = tune.with_resources(run_trial, resources)
    run_config = tune.RunConfig(
        name=name,
        storage_path=str(sweeps_dir),
        verbose=0,
        callbacks=[_callback(tracker, view)],
        failure_config=tune.FailureConfig(max_failures=2),
    )
    if tune.Tuner.can_restore(str(exp_path)):
        tuner = tune.Tuner.restore(str(exp_path), trainable, resume_unfinished=True, resume_errored=True,
                                   param_space={**tune_space(space), "avbench": ctx})
        resumed = True
    else:
        searcher = OptunaSearch(
            metric=OBJECTIVE,
            mode="max",
            study_name=name,
            storage=_optuna_storage(spec.storage, sweeps_dir / f"{name}.optuna.journal"),
            seed=spec.sampler_seed,
        )
        scheduler = ASHAScheduler(
            time_attr="training_iteration", max_t=epochs, grace_period=max(1, epochs // 4), reduction_factor=3
        )
        tuner = tune.Tuner(
            trainable,
            param_space={**tune_space(space), "avbench": ctx},
            tune_config=tune.TuneConfig(
                metric=OBJECTIVE,
                mode="max",
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_conc),
                scheduler=scheduler,
                num_samples=spec.trials,
                reuse_actors=True,  # keep trial worker processes (torch imported once per worker)
                trial_name_creator=lambda t: f"trial_{t.trial_id}",
                trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
            ),
            run_config=run_config,
        )
        resumed = False
    t_search = time.time()
    with view:
        grid = tuner.fit()
    search_s = time.time() - t_search
    best = grid.get_best_result(metric=OBJECTIVE, mode="max", scope="all")
    if best is None or best.config is None:
        raise ConfigError(f"sweep {name}: no trial finished (see {exp_path})")
    params = {k: v for k, v in best.config.items() if k != "avbench"}
    trials_done = sum(1 for r in grid if r.metrics)
    trial_nodes = sorted({r.metrics.get("node_id") for r in grid if r.metrics and r.metrics.get("node_id")})
    busy = 0.0
    for r in grid:
        df = r.metrics_dataframe
        if df is not None and "train_seconds" in df:
            busy += float(df["train_seconds"].sum())
    tracker.log(tracker.parent, params={f"best.{k}": v for k, v in params.items()})
    tracker.log(tracker.parent, metrics={f"best_{OBJECTIVE}": float(best.metrics[OBJECTIVE])})

    # ---- finals: the best configuration through the whole protocol for K seeds
    config = resolve_config(spec.method, bench.dataset, bench.features, {**base, **params})
    chash = config_hash(config)
    existing = {
        r["seed"]: r["id"]
        for r in store.rows(columns=["id", "seed"], method=spec.method, dataset=bench.dataset, features=bench.features,
                            protocol=spec.protocol, text_order=spec.text_order, config_hash=chash,
                            data_fingerprint=bench.fingerprint)
    }
    todo = [s for s in range(spec.seeds) if s not in existing]
    remote = ray.remote(num_cpus=spec.cpus_per_trial, num_gpus=gpus)(run_final)
    refs = {s: remote.remote(ctx, params, s) for s in todo}
    finals = []
    t_final = time.time()
    for s, ref in refs.items():
        d = ray.get(ref)
        res = RunResult(**d)
        rid = tracker.child(f"final-{chash}-{s}", f"final seed {s}", {"avbench.kind": "final", "avbench.final": "true"})
        tracker.log(rid, params={**params, "seed": s},
                    metrics={f"test_{k.lower()}": 100 * getattr(res, k) for k in ("S", "U", "HM", "ZSL")}
                    | {"beta": res.beta, "best_epoch": res.best_epoch})
        tracker.end(rid)
        result_id, inserted = store.add(res, mlflow_run_id=rid)
        finals.append({"seed": s, "result_id": result_id, "HM": 100 * res.HM, "ZSL": 100 * res.ZSL})
        busy += res.seconds
        if on_final:
            on_final(finals[-1])
    final_s = time.time() - t_final
    tracker.end(tracker.parent)
    summary = {
        "name": name,
        "resumed": resumed,
        "experiment": str(exp_path),
        "trials": trials_done,
        "best_config": params,
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
    if started_ray:
        ray.shutdown()
    return summary
