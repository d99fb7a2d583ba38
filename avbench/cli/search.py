"""``avbench sweep``, ``suite`` and ``ui``: hyperparameter searches and their MLflow UI."""

from __future__ import annotations

import json
import sys

from avbench.cli import _console, _parse_sets


def cmd_sweep(args) -> int:
    from avbench.search.sweep import SweepSpec, sweep

    overrides = _parse_sets(args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.batches_per_epoch is not None:
        overrides["batches_per_epoch"] = args.batches_per_epoch
    spec = SweepSpec(
        method=args.method,
        dataset=args.dataset,
        trials=args.trials,
        seeds=args.seeds,
        search_seeds=args.search_seeds,
        max_concurrent=args.max_concurrent,
        gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial,
        address=args.address,
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        name=args.name,
        protocol=args.protocol,
        text_order="legacy" if args.legacy_text_order else "by-name",
        overrides=overrides,
        home=args.home,
        db=args.db,
        memory_budget=args.memory_budget,
    )
    err = _console(stderr=True)
    live = not args.quiet and err.is_terminal
    summary = sweep(spec, console=err, live=live)
    if args.json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
        return 0
    con = _console()
    what = "resumed" if summary["resumed"] else "ran"
    con.print(f"sweep {summary['name']}: {what}; {summary['trials']} trials on seeds {summary['search_seeds']}; "
              f"best validation HM {summary['best_val_hm']:.2f} with {summary['best_config']}")
    con.print(f"  finals on seeds {summary['final_seeds']} (entry {summary['entry']})")
    for f in summary["finals"]:
        con.print(f"  final seed {f['seed']}: test HM {f['HM']:.2f}, ZSL {f['ZSL']:.2f} -> result {f['result_id']}")
    if summary["finals_already_stored"]:
        con.print(f"  seeds already in the store: {summary['finals_already_stored']}")
    con.print(f"MLflow: {summary['tracking_uri']} (avbench ui); see `avbench leaderboard`")
    return 0


def cmd_suite(args) -> int:
    from avbench.search.suite import load_suite
    from avbench.search.suite_run import run_suite, suite_status

    suite = load_suite(args.suite)
    con, err = _console(), _console(stderr=True)
    if args.suite_command == "status":
        rows = suite_status(suite, home=args.home, db=args.db, storage=args.storage)
        if args.json:
            sys.stdout.write(json.dumps({"suite": suite.name, "sweeps": rows}, default=str) + "\n")
            return 0
        from rich.table import Table

        t = Table(title=f"suite {suite.name} ({suite.path})")
        for col in ("sweep", "state", "trials", "best val HM", "finals", "note"):
            t.add_column(col)
        for r in rows:
            best = r.get("best")
            t.add_row(r["sweep"], r["state"], r.get("trials", "-"), "-" if best is None else f"{best:.2f}",
                      r.get("finals", "-"), r.get("note", ""))
        con.print(t)
        return 0
    live = not args.quiet and err.is_terminal
    summary = run_suite(suite, home=args.home, db=args.db, storage=args.storage, tracking_uri=args.tracking_uri,
                        address=args.address, console=None if args.quiet else err, live=live,
                        log_every=args.log_every, out=args.out)
    boards = summary.pop("boards")
    failed = summary["failed"]
    if args.json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
        return 1 if failed else 0
    from avbench.results.formats import render_table

    for s in summary["sweeps"]:
        if s["state"] == "skipped":
            err.print(f"skipped {s['name']}: {s['reason']}", markup=False)
        elif s["state"] == "failed":
            err.print(f"failed {s['name']}: {s['error']}", markup=False)
    if boards:
        for t in render_table(boards):
            con.print(t)
    else:
        con.print(f"suite {suite.name}: no finished sweep, no leaderboard")
    con.print(f"suite {suite.name}: {summary['ran']} sweeps ran, {summary['done']} done, {summary['skipped']} "
              f"skipped, {failed} failed in {summary['wall_seconds']:.0f} s; entries: `avbench leaderboard "
              f"--entry {suite.name}.<method>.<dataset>`", markup=False)
    if summary["written"]:
        con.print("wrote " + ", ".join(summary["written"]), markup=False)
    if summary["cd"] and summary["cd"] != "drawn":
        con.print(f"no CD diagram: {summary['cd']}", markup=False)
    return 1 if failed else 0


def cmd_ui(args) -> int:
    import subprocess

    from avbench.data.registry import avbench_home

    uri = args.tracking_uri or f"sqlite:///{avbench_home(args.home).resolve() / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    _console(stderr=True).print(f"MLflow UI on http://{args.host}:{args.port} ({uri})")
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0
