"""Running a suite (all its sweeps in one Ray Tune experiment, ``search.suite_tune``), its leaderboard, and its
status."""

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
def _prepare_imports() -> None:
    """Import what the suite uses, and quieten it."""
    # a suite resumes from its sweeps' studies and the store, not from the experiment's saved state
    # (search.suite_tune): the experiment is saved rarely, sparing the driver's CPU
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "60")
    # the trials queue for the slots by design: Ray Tune's "waiting for resources" warnings are noise here
    os.environ.setdefault("TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S", "1000000")
    os.environ.setdefault("TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S_AUTOSCALER", "1000000")
    from avbench.search.sweep_setup import quiet_libraries

    quiet_libraries()


def _start_sweeps(suite: Suite, todo: list[SweepState], home: Path, address, store) -> tuple[dict, int, list]:
    """Prepare the suite's sweeps and open their MLflow parent runs while Ray starts (unless running).
    Returns (prepared sweeps by name, trial slots, nodes); a sweep that cannot start is marked failed."""
    from concurrent.futures import ThreadPoolExecutor

    import ray

    from avbench.search.live import LiveView
    from avbench.search.resume import SETTINGS_FILE
    from avbench.search.sweep_setup import PreparedSweep
    from avbench.search.tracking import activate

    def prepare() -> dict:
        preps = {}
        for s in todo:
            try:  # a sweep started before (its settings recorded) resumes: other settings are refused
                started = (home / "sweeps" / s.item.name / SETTINGS_FILE).is_file()
                prep = PreparedSweep(s.item.spec, restoring=started, store=store)
                prep.tracker = prep.open_tracker()
                preps[s.item.name] = prep
            except Exception as e:  # one sweep's bad settings do not stop the others
                s.phase, s.error = "failed", str(e) if isinstance(e, AvbenchError) else f"{type(e).__name__}: {e}"
        return preps

    with ThreadPoolExecutor(max_workers=1) as pool:
        prepared = pool.submit(prepare)
        if not ray.is_initialized():
            from avbench.search.cluster import start_ray

            start_ray(address)
        preps = prepared.result()
    if not preps:
        return preps, None, []
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    if len(nodes) > 1:  # a cluster: storage path and data must be the same everywhere
        from avbench.search.cluster import check_cluster

        for p in {p.dataset: p for p in preps.values()}.values():
            check_cluster(p.dataset, str(home), p.fingerprint, str(p.sweeps_dir))
    slots = max(1, int(ray.cluster_resources().get("CPU", os.cpu_count() or 1) // max(suite.cpus_per_trial, 1e-9)))
    runnable = sum(1 for x in todo if x.item.spec is not None)
    for s in todo:
        prep = preps.get(s.item.name)
        if prep is None:
            continue
        prep.spec.shared_slots = slots
        # a sweep's share of the slots: its trials then follow each other and its TPE sees every earlier
        # trial (the other sweeps keep the other slots busy); the suite may set max_concurrent instead
        prep.start(prep.tracker, prep.spec.max_concurrent or max(1, slots // runnable))
        activate(s.item.name, prep.tracker, LiveView(prep.spec.trials, enabled=False))
        s.phase, s.t0 = "search", time.time()
    return preps, slots, nodes


def _tune(run, home: Path, view: SuiteView) -> None:
    """The suite's experiment in a thread while this one refreshes the view; a sweep the experiment left
    unfinished (it stopped on an error) is marked failed with the error's last line."""
    from avbench.search.suite_tune import tune_suite

    errors = []

    def work():
        try:
            resources = next(iter(run.preps.values())).resources  # the suite's: the same for every sweep
            tune_suite(run, str(home / "sweeps" / f"{run.suite}.suite"), time.strftime("run-%Y%m%d-%H%M%S"),
                       resources)
        except BaseException as e:  # reported below, after the view is closed
            errors.append(e)

    th = threading.Thread(target=work, name=f"suite {run.suite}", daemon=True)
    th.start()
    while th.is_alive():
        th.join(0.5)
        view.tick()
    for name, state in run.states.items():
        if state.phase in ("search", "finals"):
            why = "the experiment ended"
            if errors:  # the last line of Ray Tune's error (a traceback in the message)
                last = (str(errors[0]).strip().splitlines() or [""])[-1]
                why = f"{type(errors[0]).__name__}: {last}"
            run.failed(name, f"sweep {name}: {why}")


def run_suite(suite: Suite, home=None, db=None, storage=None, tracking_uri=None, address=None, console=None,
              live: bool = True, log_every: float = 30.0, out: str | None = None) -> dict:
    """Run (or resume) every sweep of the suite in one Ray Tune experiment; then its leaderboard."""
    t_start = time.time()
    from avbench.data.registry import avbench_home
    from avbench.results.store import Store

    home_path = avbench_home(home).resolve()
    items = plan(suite, home_path, db, storage, tracking_uri, address)
    store = Store(db, home_path)  # created (and migrated) once, before the sweeps open it
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
    slots = run = None
    view = SuiteView(f"suite {suite.name}", states, console=console, live=live, log_every=log_every)
    try:
        with view:
            view.tick(force=True)
            if todo:
                _prepare_imports()
                import ray

                from avbench.search.suite_tune import SuiteRun
                from avbench.search.tracking import deactivate

                started_ray = not ray.is_initialized()
                preps, slots, nodes = _start_sweeps(suite, todo, home_path, address, store)
                if preps:
                    run = SuiteRun(suite.name, preps, {s.item.name: s for s in todo}, slots, nodes)
                    _tune(run, home_path, view)
                    for name in preps:
                        deactivate(name)
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
        "worker_peak_rss_mb": run.worker_peak_rss_mb if run else None,  # the largest of the reused workers
        **board,
    }


def suite_leaderboard(suite: Suite, states: list[SweepState], store, home: Path, out: str | None) -> dict:
    """The leaderboard of the suite's entries, written in every format with the CD diagram."""
    from avbench.errors import DataError
    from avbench.results import leaderboard as lb
    from avbench.results.formats import FORMATS, write
    from avbench.results.plots import cd_diagrams

    entries = [s.item.name for s in states if s.phase == "done"]
    out_dir = Path(out) if out else home / "suites" / suite.name
    if not entries:
        return {"entries": [], "boards": [], "written": [], "cd": None, "out": str(out_dir)}
    rows = lb.board_rows(store, "HM", entry=entries)
    entries = [e for e in entries if any(r["entry"] == e for r in rows)]
    boards = lb.compile_boards(rows, metric="HM", entries=entries) if entries else []
    written = [str(p) for p in write(boards, out_dir, FORMATS[1:])] if boards else []
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
            from avbench.search.resume import optuna_storage

            st = optuna_storage(storage, sweeps_dir / f"{name}.optuna.journal")
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
