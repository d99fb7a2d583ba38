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

Every (method, dataset) pair is one sweep (``search.sweep``) named
``<suite>.<method>.<dataset>``: its own Optuna study, MLflow parent run, Ray Tune
experiment and store entry (the sweep's name). All the sweeps run at once in one Ray
job: Ray is started once, each sweep's driver is a thread of this process with its own
``Tuner``, and their trials and finals queue for the same CPUs/GPUs, so a slot freed
by one sweep's tail goes to another sweep's trial. Unless the suite sets
``max_concurrent``, the slots are split between the sweeps (at least one each): a
sweep's trials then follow each other in one reused Ray Tune actor instead of each
starting a process that imports torch and loads the data. A pair that cannot run (a temporal
method on averaged features, a dataset not imported, no search space) is reported and
skipped. Rerunning the suite resumes every unfinished sweep (``Tuner.restore``, the
Optuna storage, the store's idempotent writes) and skips finished ones.
"""

from __future__ import annotations

import json
import os
import threading
import time
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
    from avbench.protocol.run import resolve_config
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
                _, options, _ = resolve_protocol(m, suite.protocol, bench.settings_dataset, bench.features)
                load_space(m, bench.dataset)
                resolve_config(m, bench.settings_dataset, bench.features, {**bench.budget, **overrides},
                               protocol_options=options)
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
    from avbench.search.sweep import SETTINGS_FILE, seed_plan

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
    if (started.get("trials"), started.get("search_seeds")) != (spec.trials, spec.search_seeds):
        return False  # changed settings: let sweep() say so
    _, finals = seed_plan(spec.search_seeds, spec.seeds)
    stored = {r["seed"] for r in store.rows(columns=["seed", "config_hash"], entry=item.name)
              if r["config_hash"] == done.get("best_config_hash")}
    return set(finals) <= stored


# --------------------------------------------------------------------------- progress
class SweepState:
    def __init__(self, item: Planned):
        self.item = item
        self.phase = "skipped" if item.skip else "waiting"
        self.error: str | None = item.skip
        self.finals = 0
        self.summary: dict | None = None
        self.t0 = self.t1 = None
        self.traceback: str | None = None

    def counts(self) -> tuple[dict, float | None]:
        from avbench.search.tracking import _ACTIVE

        active = _ACTIVE.get(self.item.name)
        view = active[1] if active else None
        counts = getattr(view, "counts", None) or {}
        best = getattr(view, "best", None)
        if self.summary:
            counts = {"done": self.summary["trials"], "running": 0}
            best = self.summary["best_val_hm"]
        return counts, best

    def line(self) -> dict:
        counts, best = self.counts()
        spec = self.item.spec
        total = spec.trials if spec else 0
        phase = self.phase
        if phase == "search" and counts.get("done", 0) >= total:
            phase = "finals"
        finals = "-"
        if spec:
            stored = len(self.summary["finals"]) + len(self.summary["finals_already_stored"]) if self.summary \
                else self.finals
            finals = f"{stored}/{spec.seeds}"
        return {
            "sweep": self.item.name, "state": phase,
            "trials": f"{counts.get('done', 0)}/{total} done, {counts.get('running', 0)} running" if spec else "-",
            "best": "-" if best is None else f"{best:.2f}", "finals": finals,
            "note": (self.error or "").splitlines()[0][:120] if self.error else "",
        }


class SuiteView:
    """One line per sweep: a rich live table on a terminal, periodic plain lines otherwise."""

    def __init__(self, title: str, states: list[SweepState], console=None, live: bool = True,
                 log_every: float = 30.0):
        self.title, self.states, self.console = title, states, console
        self.live, self.log_every, self.t0, self.last_log = None, log_every, time.time(), 0.0
        if live and console is not None:
            from rich.live import Live

            self.live = Live(self.render(), console=console, refresh_per_second=1, transient=False)

    def render(self):
        from rich.table import Table

        done = sum(s.phase in ("done", "skipped", "failed") for s in self.states)
        t = Table(title=f"{self.title} · {done}/{len(self.states)} sweeps ended · {time.time() - self.t0:.0f} s")
        for col in ("sweep", "state", "trials", "best val HM", "finals", "note"):
            t.add_column(col, justify="right" if col in ("best val HM", "finals") else "left")
        for s in self.states:
            line = s.line()
            t.add_row(line["sweep"], line["state"], line["trials"], line["best"], line["finals"], line["note"])
        return t

    def plain(self) -> str:
        done = sum(s.phase in ("done", "skipped", "failed") for s in self.states)
        lines = [f"[{time.time() - self.t0:.0f} s] {self.title}: {done}/{len(self.states)} sweeps ended"]
        for s in self.states:
            if s.phase == "skipped":
                continue
            x = s.line()
            lines.append(f"  {x['sweep']}: {x['state']}; trials {x['trials']}; best val HM {x['best']}; "
                         f"finals {x['finals']}" + (f"; {x['note']}" if x["note"] else ""))
        return "\n".join(lines)

    def tick(self, force: bool = False) -> None:
        if self.live is not None:
            self.live.update(self.render())
        elif self.console is not None and (force or time.time() - self.last_log >= self.log_every):
            self.last_log = time.time()
            self.console.print(self.plain(), markup=False, highlight=False, soft_wrap=True)

    def __enter__(self):
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(*exc)


# --------------------------------------------------------------------------- run
def _prepare_imports(n_sweeps: int) -> None:
    """Import what the sweep threads use once, in the main thread; settings shared by the sweeps."""
    import logging
    import warnings

    # each sweep's Tune controller saves its experiment state this often (a lone sweep: every second);
    # many at once in one driver would spend a core on it: about 2 saves a second in all, at most 10 s apart
    # (what a kill -9 can cost: trials that ended since the last save run again)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(max(1, min(10, n_sweeps // 2))))

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # sweeps wait for each other's slots by design: Ray Tune's "waiting for resources" warnings are noise here
    os.environ.setdefault("TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S", "1000000")
    os.environ.setdefault("TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S_AUTOSCALER", "1000000")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import mlflow  # noqa: F401
    import mlflow.tracking  # noqa: F401
    import optuna  # noqa: F401
    import ray  # noqa: F401
    import torch  # noqa: F401
    from ray import tune  # noqa: F401
    from ray.tune.schedulers import ASHAScheduler  # noqa: F401
    from ray.tune.search.optuna import OptunaSearch  # noqa: F401

    for noisy in ("mlflow", "alembic", "ray", "ray.tune"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _thread_safe_tune_registry() -> None:
    """Ray Tune registers each experiment's trainable in a process-global registry whose flush
    iterates a dict (``ray.tune.registry._global_registry``): two sweep threads registering at once
    fail with "dictionary changed size during iteration". Serialise its methods with one lock."""
    from ray.tune import registry

    reg = registry._global_registry
    if getattr(reg, "_avbench_lock", None) is not None:
        return
    lock = threading.RLock()
    for name in ("register", "unregister", "unregister_all", "flush_values", "contains", "get"):
        original = getattr(reg, name)

        def locked(*args, _original=original, **kwargs):
            with lock:
                return _original(*args, **kwargs)

        setattr(reg, name, locked)
    reg._avbench_lock = lock


def run_suite(suite: Suite, home=None, db=None, storage=None, tracking_uri=None, address=None, console=None,
              live: bool = True, log_every: float = 30.0, out: str | None = None) -> dict:
    """Run (or resume) every sweep of the suite at once in one Ray job; then its leaderboard."""
    t_start = time.time()
    from avbench.data.registry import avbench_home
    from avbench.results.store import Store

    home_path = avbench_home(home).resolve()
    items = plan(suite, home_path, db, storage, tracking_uri, address)
    store = Store(db, home_path)  # created (and migrated) once, before the threads open it
    states = [SweepState(i) for i in items]
    for s in states:
        if s.item.spec is not None and _finished(s.item, home_path, store):
            s.phase = "done"
            s.summary = json.loads((home_path / "sweeps" / s.item.name / "avbench_summary.json").read_text())
            s.summary = {**s.summary, "finals": [], "finals_already_stored":
                         sorted({*s.summary.get("finals_already_stored", []),
                                 *(f["seed"] for f in s.summary.get("finals", []))}), "skipped_finished": True}
    todo = [s for s in states if s.phase == "waiting"]

    started_ray = False
    slots = None
    if todo:
        _prepare_imports(len(todo))
        _thread_safe_tune_registry()
        import logging

        import ray
        import torch

        if not ray.is_initialized():
            kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                      configure_logging=True)
            if address:
                ray.init(address=address, **kw)
            else:
                cuda = torch.cuda.is_available()
                ray.init(num_cpus=os.cpu_count(), num_gpus=torch.cuda.device_count() if cuda else 0, **kw)
            started_ray = True
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(suite.cpus_per_trial, 1e-9)))
        for s in todo:
            s.item.spec.shared_slots = slots
            if s.item.spec.max_concurrent is None:
                # the slots split between the sweeps: a sweep's trials then run one after another in the
                # same Ray Tune actor (reused: no new process, imports and data load per trial) while the
                # other sweeps fill the other slots
                s.item.spec.max_concurrent = max(1, slots // len(todo))

    def work(state: SweepState) -> None:
        from avbench.search.sweep import sweep

        state.phase, state.t0 = "search", time.time()

        def on_final(_):
            state.finals += 1

        try:
            state.summary = sweep(state.item.spec, console=None, live=False, on_final=on_final)
            state.phase = "done"
        except BaseException as e:  # one sweep's failure does not stop the others
            import traceback

            state.traceback = traceback.format_exc()
            state.phase, state.error = "failed", f"{type(e).__name__}: {e}" if not isinstance(e, AvbenchError) \
                else str(e)
        finally:
            state.t1 = time.time()

    view = SuiteView(f"suite {suite.name}", states, console=console, live=live, log_every=log_every)
    threads = []
    try:
        with view:
            view.tick(force=True)
            for s in todo:
                th = threading.Thread(target=work, args=(s,), name=f"sweep {s.item.name}", daemon=True)
                th.start()
                threads.append(th)
            while any(th.is_alive() for th in threads):
                time.sleep(0.5)
                view.tick()
            view.tick(force=True)
    finally:
        if started_ray:
            import ray

            ray.shutdown()

    # ---- the suite's leaderboard: its entries only
    board = suite_leaderboard(suite, states, store, home_path, out)
    wall = time.time() - t_start
    sweeps = []
    busy = 0.0
    for s in states:
        rec = {"name": s.item.name, "method": s.item.method, "dataset": s.item.dataset, "state": s.phase}
        if s.error:
            rec["reason" if s.phase == "skipped" else "error"] = s.error
        if s.traceback:
            rec["traceback"] = s.traceback
        if s.summary:
            rec.update({k: s.summary.get(k) for k in ("resumed", "trials", "best_val_hm", "best_config", "wall_seconds",
                                                      "busy_seconds", "search_seconds", "final_seconds",
                                                      "finals_already_stored")})
            rec["finals"] = [f["seed"] for f in s.summary.get("finals", [])]
            if not s.summary.get("skipped_finished"):
                busy += float(s.summary.get("busy_seconds") or 0.0)
        sweeps.append(rec)
    return {
        "suite": suite.name,
        "file": str(suite.path),
        "sweeps": sweeps,
        "ran": sum(1 for s in todo if s.phase == "done"),
        "done": sum(1 for s in states if s.phase == "done"),
        "skipped": sum(1 for s in states if s.phase == "skipped"),
        "failed": sum(1 for s in states if s.phase == "failed"),
        "wall_seconds": wall,
        "busy_seconds": busy,
        "slots": slots,
        **board,
    }


def suite_leaderboard(suite: Suite, states: list[SweepState], store, home: Path, out: str | None) -> dict:
    """The leaderboard of the suite's entries, written in every format with the CD diagram."""
    from avbench.errors import DataError
    from avbench.results import leaderboard as lb
    from avbench.results.plots import cd_diagrams

    entries = [s.item.name for s in states if s.phase == "done"]
    out_dir = Path(out) if out else home / "suites" / suite.name
    if not entries:
        return {"entries": [], "boards": [], "written": [], "cd": None, "out": str(out_dir)}
    rows = store.rows(columns=lb.ROW_COLUMNS + ["HM"], entry=entries)
    entries = [e for e in entries if any(r["entry"] == e for r in rows)]
    boards = lb.compile_boards(rows, metric="HM", entries=entries) if entries else []
    written = [str(p) for p in lb.write(boards, out_dir, lb.FORMATS[1:])] if boards else []
    cd = None
    if boards:
        try:
            written += [str(p) for p in cd_diagrams(boards, out_dir)]
            cd = "drawn"
        except DataError as e:
            cd = str(e)
    return {"entries": entries, "boards": boards, "written": written, "cd": cd, "out": str(out_dir)}


# --------------------------------------------------------------------------- status
def suite_status(suite: Suite, home=None, db=None, storage=None) -> list[dict]:
    """Each sweep's state without running anything: skipped (why), not started, searching (trials in the
    Optuna study), finals stored."""
    from avbench.data.registry import avbench_home
    from avbench.results.store import Store

    home_path = avbench_home(home).resolve()
    items = plan(suite, home_path, db, storage)
    store = Store(db, home_path)
    out = []
    for item in items:
        rec = {"sweep": item.name, "method": item.method, "dataset": item.dataset}
        if item.skip:
            out.append({**rec, "state": "skipped", "note": item.skip})
            continue
        exp = home_path / "sweeps" / item.name
        stored = sorted({r["seed"] for r in store.rows(columns=["seed"], entry=item.name)})
        trials = _study_trials(item.name, exp.parent, storage)
        if _finished(item, home_path, store):
            state = "done"
        elif exp.is_dir():
            state = "finals" if (exp / "avbench_summary.json").is_file() or trials["complete"] >= item.spec.trials \
                else "unfinished"
        else:
            state = "not started"
        out.append({**rec, "state": state, "trials": f"{trials['complete']}/{item.spec.trials}",
                    "best": trials["best"], "finals": f"{len(stored)}/{item.spec.seeds}", "note": ""})
    return out


def _study_trials(name: str, sweeps_dir: Path, storage: str | None) -> dict:
    """Completed trials and best value in the sweep's Optuna study (read only)."""
    out = {"complete": 0, "best": None}
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if storage:
            from avbench.search.sweep import _optuna_storage

            st = _optuna_storage(storage, sweeps_dir / f"{name}.optuna.journal")
        else:
            path = sweeps_dir / f"{name}.optuna.journal"
            if not path.is_file():
                return out
            from optuna.storages.journal import JournalFileBackend

            st = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        trials = optuna.load_study(study_name=name, storage=st).trials
    except Exception:  # no study yet
        return out
    values = [t.value for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    out["complete"] = len(values)
    out["best"] = max(values) if values else None
    return out
