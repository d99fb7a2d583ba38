"""Running a suite (all its sweeps at once in one Ray job), its leaderboard, and its status."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from avbench.errors import AvbenchError
from avbench.search.suite import Suite, _finished, plan
from avbench.search.suite_view import SuiteView, SweepState


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
        import ray

        if not ray.is_initialized():
            from avbench.search.cluster import start_ray

            start_ray(address)
            started_ray = True
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(suite.cpus_per_trial, 1e-9)))
        for s in todo:
            s.item.spec.shared_slots = slots
            if s.item.spec.max_concurrent is None:
                # the slots split between the sweeps: a sweep's trials then run one after another in the
                # same Ray Tune actor (reused: no new process, imports and data load per trial) while the
                # other sweeps fill the other slots
                # (divided among all the suite's runnable sweeps, finished or not: a rerun searches as the first run)
                s.item.spec.max_concurrent = max(1, slots // sum(1 for x in states if x.item.spec is not None))

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
