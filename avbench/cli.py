"""The ``avbench`` command line.

    avbench run [--method avca] [--dataset synthetic] [--seed 0] [--protocol avca2022|reference] ...
    avbench data import --root DIR --dataset ucf --features main
    avbench datasets
    avbench methods
    avbench leaderboard [--dataset D ...] [--metric HM] [--format table|md|csv|tex|html] [--out DIR] [--reported]
    avbench results
    avbench plot metric|beta|epochs [--result ID] --out DIR

Errors are one line on stderr (exit 2); progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

from avbench import __version__
from avbench.errors import AvbenchError, ConfigError


def _parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _console(stderr: bool = False):
    from rich.console import Console

    con = Console(stderr=stderr, highlight=False)
    if not con.is_terminal:  # piped or captured: do not squeeze wide tables into 80 columns
        con = Console(stderr=stderr, highlight=False, width=max(con.width, 160))
    return con


# ---------------------------------------------------------------------------
def cmd_run(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from avbench.data.registry import load_benchmark
    from avbench.protocol.run import run_protocol

    bench = load_benchmark(args.dataset, args.home)
    overrides = _parse_sets(args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.batches_per_epoch is not None:
        overrides["batches_per_epoch"] = args.batches_per_epoch
    if args.threads is not None:
        overrides["threads"] = args.threads
    store = None
    if not args.no_store:  # open the store first: an unreachable store or a clashing --entry fails before training
        from avbench.methods import get_method
        from avbench.protocol.presets import resolve_protocol
        from avbench.protocol.run import resolve_config
        from avbench.results.store import Store, config_hash

        store = Store(args.db, args.home)
        preset, protocol_options, mode = resolve_protocol(args.method, args.protocol, bench.settings_dataset,
                                                          bench.features, benchmark=bench)
        config = resolve_config(args.method, bench.settings_dataset, bench.features, {**bench.budget, **overrides},
                                protocol_options=protocol_options)
        planned = dict(method=get_method(args.method).name, dataset=bench.dataset, features=bench.features,
                       config_hash=config_hash(config), data_fingerprint=bench.fingerprint,
                       text_order="legacy" if args.legacy_text_order else "by-name", protocol=preset,
                       protocol_mode=mode, protocol_options=dict(protocol_options))
        if args.entry:
            store.check_entry_compatible(args.entry, **planned)
        chose = _search_seed_of(store, {**planned, "seed": args.seed})
        if chose and not args.quiet:  # said before hours of training, and again with the result
            _console(stderr=True).print(f"note: {_left_out(args.seed, chose)}")

    err = _console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=args.quiet or not err.is_terminal and not args.progress,
    )
    tasks: dict[str, int] = {}

    def on_stage(stage, epochs, batches):
        tasks[stage] = progress.add_task(stage, total=epochs, info="")
        if "batches" in tasks:
            progress.remove_task(tasks["batches"])
        tasks["batches"] = progress.add_task("  batches", total=batches, info="")

    def on_epoch(stage, rec, total):
        info = f"loss {rec.loss:.3f} lr {rec.lr:.0e}"
        if rec.val:
            info += f"  val HM {100 * rec.val['HM']:.2f} (β {rec.val['beta']:.2f})"
        progress.update(tasks[stage], completed=rec.epoch, info=info)
        progress.reset(tasks["batches"])

    def on_batch():
        progress.advance(tasks["batches"])

    def on_data(stage, resident, nbytes, budget):
        if args.quiet:
            return
        from avbench.protocol.feed import fmt_bytes

        size = "size unknown" if nbytes is None else fmt_bytes(nbytes)
        how = "in memory" if resident else f"streamed from {bench.name}'s file"
        progress.console.print(f"[dim]{stage} data: {how} ({size}; memory budget {fmt_bytes(budget)})[/dim]")

    with progress:
        result = run_protocol(
            bench,
            args.method,
            protocol=args.protocol,
            seed=args.seed,
            overrides=overrides,
            text_order="legacy" if args.legacy_text_order else "by-name",
            device=args.device,
            on_epoch=on_epoch,
            on_batch=on_batch if not progress.disable else None,
            on_stage=on_stage,
            memory_budget=args.memory_budget,
            on_data=on_data,
        )
    summary = result.summary()
    stored = None
    if store is not None:
        rid, inserted = store.add(result, entry=args.entry)
        stored = (rid, inserted, store)
        summary["result_id"] = rid
        summary["entry"] = store.get(rid)["entry"]
        summary["search_seed_of"] = chose  # the stored row has the planned identity
    if args.json:
        out = {**summary, "features": result.features, "stage2_epochs": result.stage2_epochs,
               "device": result.device, "hardware": result.hardware, "torch_version": result.torch_version,
               "config": result.config, "val": result.val,
               "data_access": result.data_access}
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    _print_result(summary, result)
    if stored:
        rid, inserted, store = stored
        what = "stored as result" if inserted else "already in the store as result"
        _console().print(f"{what} {rid} ({store._safe_url()}); see `avbench leaderboard`")
        if summary["search_seed_of"]:
            _console().print(_left_out(summary["seed"], summary["search_seed_of"]))
    return 0


def _left_out(seed: int, sweeps: list[str]) -> str:
    return (f"left out of the leaderboard: seed {seed} chose this configuration in sweep {', '.join(sweeps)} "
            f"(a result on a search seed repeats the run that won the search; run other seeds)")


def _search_seed_of(store, row: dict) -> list[str]:
    """The sweep entries that chose this result's configuration on its seed (the leaderboard leaves it out)."""
    from avbench.results.leaderboard import IDENTITY, identity, searched_by

    same = store.rows(columns=[*IDENTITY, "entry", "search_seeds"], config_hash=row["config_hash"])
    return sorted(searched_by(same).get(identity(row), {}).get(int(row["seed"]), ()))


def _print_result(summary: dict, result) -> None:
    from rich.table import Table

    from avbench.results.provenance import machine

    t = Table(title=f"{summary['method']} on {summary['dataset']} ({summary['protocol']}, seed {summary['seed']})")
    for col in ("S", "U", "HM", "ZSL", "best epoch", "β"):
        t.add_column(col, justify="right")
    t.add_row(
        f"{summary['S']:.2f}",
        f"{summary['U']:.2f}",
        f"{summary['HM']:.2f}",
        f"{summary['ZSL']:.2f}",
        str(summary["best_epoch"]),
        f"{summary['beta']:.2f}",
    )
    con = _console()
    con.print(t)
    con.print(
        f"test metrics ×100; epoch and β chosen on validation (val HM {100 * result.val['HM']:.2f}); "
        f"stage 2 trained {result.stage2_epochs} epochs; text order {summary['text_order']}; "
        f"data {summary['data_fingerprint']}; {summary['seconds']:.1f} s on {result.device} "
        f"({machine({'hardware': result.hardware, 'torch_version': result.torch_version})})"
    )


def cmd_leaderboard(args) -> int:
    from avbench.results import leaderboard as lb
    from avbench.results.formats import FORMATS, render, render_table, write
    from avbench.results.reported import load_reported
    from avbench.results.store import Store

    store = Store(args.db, args.home)
    rows = store.rows(columns=lb.ROW_COLUMNS + [args.metric], dataset=args.dataset or None)
    reported = load_reported() if args.reported else None
    boards = lb.compile_boards(rows, metric=args.metric, datasets=args.dataset or None, reported=reported,
                               entries=args.entry or None)
    if args.out:
        formats = FORMATS[1:] if args.format == "table" else (args.format,)
        paths = write(boards, args.out, formats, with_reported=args.reported)
        _console(stderr=True).print("wrote " + ", ".join(str(p) for p in paths))
    if args.format == "table":
        con = _console()
        if not boards:
            con.print("no results in the store yet: run `avbench run` first")
        for t in render_table(boards, args.reported):
            con.print(t)
    elif not args.out:
        sys.stdout.write(render(boards, args.format, args.reported))
    return 0


def cmd_results(args) -> int:
    from rich.table import Table

    from avbench.results.provenance import code, machine
    from avbench.results.store import Store

    store = Store(args.db, args.home)
    if args.results_command == "delete":
        n = store.delete_entry(args.entry_name)
        if not n:
            raise ConfigError(f"--entry {args.entry_name!r}: no such entry in {store._safe_url()} (see `avbench results`)")
        _console().print(f"deleted entry {args.entry_name}: {n} results")
        return 0
    rows = store.rows(
        columns=["id", "entry", "entry_kind", "method", "dataset", "features", "protocol", "protocol_mode",
                 "text_order", "seed", "search_seeds", "S", "U", "HM", "ZSL", "beta", "best_epoch", "config_hash",
                 "reduced_budget", "git_revision", "avbench_version", "threads", "device", "hardware", "torch_version",
                 "created_at"],
        dataset=args.dataset or None,
        method=args.method or None,
        entry=args.entry or None,
    )
    if args.entry and not rows:
        raise ConfigError(f"--entry {args.entry[0]!r}: no such entry in {store._safe_url()}")
    t = Table(title=f"results in {store._safe_url()}")
    cols = ("id", "entry", "method", "benchmark", "protocol / text", "seed", "S", "U", "HM", "ZSL", "β", "ep",
            "config", "code", "threads", "machine")
    for col in cols:
        t.add_column(col, justify="right" if col in ("S", "U", "HM", "ZSL", "β", "ep", "seed", "id", "threads")
                     else "left")
    machines: dict[str, str] = {}  # a short label per machine; the legend under the table names them
    for r in rows:
        label = machines.setdefault(machine(r), f"m{len(machines) + 1}")
        proto = r["protocol"] + ("" if r["protocol_mode"] == "platform" else f" ({r['protocol_mode']})")
        entry = r["entry"] + (" [sweep]" if r["entry_kind"] == "sweep" else "") + \
            (" [reduced budget]" if r["reduced_budget"] else "")
        seed = str(r["seed"]) + (f" (search {r['search_seeds']})" if r["search_seeds"] else "")
        t.add_row(str(r["id"]), entry, r["method"], f"{r['dataset']}-{r['features']}", f"{proto} / {r['text_order']}",
                  seed, *(f"{r[k]:.2f}" for k in ("S", "U", "HM", "ZSL")), f"{r['beta']:.2f}",
                  str(r["best_epoch"]), r["config_hash"][:8], code(r),
                  "-" if r["threads"] is None else str(r["threads"]), label)
    con = _console()
    con.print(t)
    for name, label in machines.items():
        con.print(f"machine {label}: {name}", soft_wrap=True)  # one line per machine, never folded
    return 0


def cmd_plot(args) -> int:
    from avbench.results import plots
    from avbench.results.store import Store

    store = Store(args.db, args.home)
    if args.kind == "metric":
        from avbench.results import leaderboard as lb

        rows = store.rows(columns=lb.ROW_COLUMNS + [args.metric], dataset=args.dataset or None)
        boards = lb.compile_boards(rows, metric=args.metric, datasets=args.dataset or None, entries=args.entry or None)
        paths = plots.metric_bars(boards, args.out)
    elif args.kind == "cd":
        from avbench.results import leaderboard as lb

        rows = store.rows(columns=lb.ROW_COLUMNS + [args.metric], dataset=args.dataset or None)
        boards = lb.compile_boards(rows, metric=args.metric, datasets=args.dataset or None, entries=args.entry or None)
        paths = plots.cd_diagrams(boards, args.out)
    else:
        if args.result is None:
            raise ConfigError(f"avbench plot {args.kind}: --result ID is required (ids: `avbench results`)")
        row = store.get(args.result)
        paths = (plots.beta_curve if args.kind == "beta" else plots.val_per_epoch)(row, args.out)
    _console().print("wrote " + ", ".join(str(p) for p in paths))
    return 0


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


def cmd_import(args) -> int:
    from avbench.data.benchmark import Benchmark
    from avbench.data.layout import import_to_file
    from avbench.data.registry import dataset_path

    err = _console(stderr=True)
    with err.status(f"reading {args.dataset} ({args.features}) from {args.root}") as status:
        written = import_to_file(args.root, args.dataset, args.features,
                                 dataset_path(f"{args.dataset}-{args.features}", args.home), dtype=args.dtype,
                                 progress=lambda s: status.update(f"read {s}"), max_len=args.max_len)
    s = Benchmark.open(written.path).summary()
    _console().print(
        f"imported {s['name']}: {s['classes']} classes, audio {s['audio_dim']}-d, video {s['video_dim']}-d, "
        f"text {s['text_dim']}-d, {s['dtype']}, fingerprint {s['fingerprint']} -> {written.path}"
    )
    return 0


def cmd_verify(args) -> int:
    """Recompute each benchmark file's fingerprint from its values; exit 1 when one differs from its record."""
    import time

    from avbench.data.registry import avbench_home, dataset_path, list_benchmarks, load_benchmark
    from avbench.errors import DataError

    names = args.dataset or [r["name"] for r in list_benchmarks(args.home) if r["status"] in ("imported", "extracted")]
    if not names:
        raise DataError(f"no imported or extracted benchmark in {avbench_home(args.home) / 'datasets'} to verify")
    out, err, bad = _console(), _console(stderr=True), 0
    for name in names:
        bench = load_benchmark(name, args.home)
        t = time.perf_counter()
        now = bench.recomputed_fingerprint()
        seconds = time.perf_counter() - t
        if now == bench.fingerprint:
            out.print(f"{bench.name}: fingerprint {now} verified ({sum(bench.split_bytes.values()) / 1e6:.0f} MB of "
                      f"features read in {seconds:.1f} s)", markup=False, soft_wrap=True)
        else:
            bad += 1
            err.print(f"{dataset_path(name, args.home)}: its values give fingerprint {now}, but the file records "
                      f"{bench.fingerprint}: it changed after it was written; results of it are not of that data "
                      "version (re-import it)",
                      markup=False, soft_wrap=True)
    return 1 if bad else 0


def cmd_extract(args) -> int:
    import importlib.util

    from avbench.errors import DataError

    missing = [m for m in ("av", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise DataError(f"avbench data extract needs {' and '.join(missing)}: pip install -e \".[extract]\"")
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from avbench.data.extract import ExtractOptions, extract

    opts = ExtractOptions(
        videos=args.videos, name=args.name, split_from=args.split_from, metadata=args.metadata, split=args.split,
        video_split=args.video_split, settings_from=args.settings_from, seed=args.seed, frames=args.frames,
        max_len=args.max_len, clip=args.clip, clap=args.clap, templates=args.templates, device=args.device,
        batch_size=args.batch_size, workers=args.workers, cache=args.cache, home=args.home,
    )
    err = _console(stderr=True)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=err,
                        disable=args.quiet or not err.is_terminal)
    task: dict = {}
    counts = {"cached": 0, "extracted": 0, "failed": 0}

    def on_start(total):
        task["id"] = progress.add_task("videos", total=total, info="")

    def on_video(status):
        counts[status] += 1
        progress.update(task["id"], advance=1, info=", ".join(f"{v} {k}" for k, v in counts.items() if v))

    def on_status(text):
        if not args.quiet and not args.json:
            progress.console.print(f"[dim]{escape(text)}[/dim]")

    with progress:
        path, bench, report = extract(opts, on_start=on_start, on_video=on_video, on_status=on_status)
    if args.json:
        sys.stdout.write(json.dumps(report, default=str) + "\n")
        return 0
    con = _console()
    s = bench.summary()
    con.print(f"extracted {s['name']}: {s['classes']} classes, audio {s['audio_dim']}-d, video {s['video_dim']}-d, "
              f"text {s['text_dim']}-d ({bench.features} features, {bench.settings_dataset} settings), fingerprint "
              f"{s['fingerprint']} -> {path}", markup=False)
    con.print(f"videos: {report['videos_used']} used of {report['videos_found']} found, {report['extracted']} extracted, "
              f"{report['cached']} cached, {len(report['failed'])} failed; "
              + ", ".join(f"{k} {v['classes']}/{v['videos']}" for k, v in report["splits"].items())
              + " (classes/videos)", markup=False)
    notes = [f"failed: {f['path']}: {f['reason']}" for f in report["failed"]]
    notes += [f"unmatched class: {c} ({n} videos)" for c, n in report["unmatched_classes"].items()]
    if report["classes_not_in_split"]:
        out = report["classes_not_in_split"]
        notes.append(f"{len(out)} classes of the dataset are in none of the benchmark's splits ({sum(out.values())} "
                     f"videos left out): {', '.join(sorted(out))}")
    notes += [f"class without videos: {c}" for c in report["classes_without_videos"]]
    notes += [f"left out: {c}" for c in report["dropped_classes"]] + report["table_conflicts"]
    if report["videos_not_in_tables"]:
        notes.append(f"{report['videos_not_in_tables']} videos of matching classes are in none of the split tables")
    for line in notes[:20]:
        err.print(line, markup=False)
    if len(notes) > 20:
        err.print(f"... and {len(notes) - 20} more", markup=False)
    con.print(f"report: {report['report']}; run: avbench run --method avca --dataset {s['name']}", markup=False)
    return 0


def cmd_datasets(args) -> int:
    from rich.table import Table

    from avbench.data.registry import list_benchmarks

    t = Table(title="datasets")
    for col in ("name", "status", "detail"):
        t.add_column(col)
    for row in list_benchmarks(args.home):
        t.add_row(row["name"], row["status"], row["detail"])
    _console().print(t)
    return 0


def cmd_methods(args) -> int:
    from rich.table import Table

    from avbench.methods import available_methods

    t = Table(title="methods")
    for col in ("name", "description", "paper"):
        t.add_column(col)
    from rich.markup import escape

    for name, cls in available_methods().items():
        t.add_row(escape(name), escape(cls.description), escape(cls.paper))
    _console().print(t)
    return 0


# ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from avbench.data.layout import FEATURES
    from avbench.protocol.presets import DEFAULT_PRESET, PROTOCOLS

    p = argparse.ArgumentParser(prog="avbench", description="Audio-visual GZSL benchmark platform")
    p.add_argument("--version", action="version", version=f"avbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", default=None, help="avbench's data home (default $AVBENCH_HOME or ~/.avbench)")
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=None, help="results store URL (default $AVBENCH_DB or sqlite in the data home)")

    r = sub.add_parser("run", parents=[home, db], help="train and evaluate one method through the two-stage protocol")
    r.add_argument("--method", default="avca", type=str.lower)
    r.add_argument("--dataset", default="synthetic", help="synthetic, or an imported name: ucf, ucf-cls, activitynet, ...")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--protocol", default=DEFAULT_PRESET, choices=PROTOCOLS,
                   help="a preset (one protocol for every method) or reference (each method's own code's protocol)")
    r.add_argument("--epochs", type=int, default=None, help="epoch budget of stage 1 (default: method/dataset default)")
    r.add_argument("--batches-per-epoch", type=int, default=None)
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any method or protocol setting")
    r.add_argument("--legacy-text-order", action="store_true", help="the public code's misaligned class embeddings")
    r.add_argument("--device", default="auto", help="cpu, cuda, or auto: cuda when available (default)")
    r.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 1): results are bit-reproducible for a given count, not across "
                        "counts, so the count is part of the run's settings")
    r.add_argument("--memory-budget", default=None, metavar="SIZE",
                   help="feature bytes a stage may keep in memory (e.g. 4GB); larger splits are streamed from the "
                        "file (default: a quarter of the machine's memory; on a GPU at most half of its memory); "
                        "never changes a result")
    r.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--no-store", action="store_true", help="do not write the result to the results store")
    r.add_argument("--entry", default=None,
                   help="the leaderboard entry this result joins (default: one entry per configuration, budget and "
                        "data); an entry holds one configuration on one data version")
    r.add_argument("--progress", action="store_true", help="progress bars even when stderr is not a terminal")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("data", help="benchmark data")
    dsub = d.add_subparsers(dest="data_command", required=True)
    i = dsub.add_parser("import", parents=[home], help="import a directory in the public AVCA-GZSL layout")
    i.add_argument("--root", required=True, help="folder holding UCF/, ActivityNet/, VGGSound/ (or one of them)")
    i.add_argument("--dataset", required=True, choices=["ucf", "activitynet", "vggsound"])
    i.add_argument("--features", default="main", choices=list(FEATURES),
                   help="main | cls (averaged) | temporal-main | temporal-cls (per-second sequences, TCAF)")
    i.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                   help="how feature values are stored (float16 halves the file; part of the fingerprint)")
    i.add_argument("--max-len", type=int, default=None,
                   help="temporal only: centre-crop longer sequences to this many steps (default: 300 for "
                        "ActivityNet, none otherwise; 0 keeps whole sequences, as TCAF's code on ActivityNet needs)")
    i.set_defaults(func=cmd_import)
    x = dsub.add_parser("extract", parents=[home], help="a benchmark from raw videos: CLIP video, CLAP audio, CLIP‖CLAP "
                                                        "text features (pip install -e \".[extract]\")")
    x.add_argument("--videos", required=True, help="folder of <Class>/<video> files, or a csv of path,class")
    x.add_argument("--name", "--dataset", dest="name", default=None,
                   help="the new benchmark's name (default: <split-from>-extracted, or the videos folder's name)")
    x.add_argument("--split-from", default=None, choices=["ucf", "activitynet", "vggsound"],
                   help="apply this published benchmark's class split (needs --metadata)")
    x.add_argument("--metadata", default=None, help="the AVCA-GZSL class-split metadata (folder holding UCF/, ...)")
    x.add_argument("--split", default="main", choices=["main", "cls"], help="which published split (default main)")
    x.add_argument("--video-split", default=None, choices=["tables", "seeded"],
                   help="videos by the metadata's per-video tables (default when present) or by seed")
    x.add_argument("--settings-from", default=None, choices=["ucf", "activitynet", "vggsound"],
                   help="published settings the methods use (default: --split-from; required for own classes)")
    x.add_argument("--seed", type=int, default=0, help="seed of the split of own classes / seeded videos")
    x.add_argument("--frames", default="middle", choices=["middle", "per-second"],
                   help="middle frame (ClipClap) or one frame and 1-s audio window per second (temporal methods)")
    x.add_argument("--max-len", type=int, default=None, help="per-second: centre-crop to this many steps "
                                                               "(default 300 with ActivityNet settings; 0: none)")
    x.add_argument("--clip", default=None, help="CLIP model: a local folder or a name in the Hugging Face cache "
                                                "(default openai/clip-vit-base-patch32)")
    x.add_argument("--clap", default=None, help="CLAP model: a local folder or a name in the Hugging Face cache "
                                                "(default laion/larger_clap_general)")
    x.add_argument("--templates", default=None, choices=["action", "sound", "plain"],
                   help="prompt templates of the class embeddings (default: action for ucf/activitynet, sound for "
                        "vggsound settings)")
    x.add_argument("--device", default="auto", help="cpu, cuda, or auto: cuda when available (default)")
    x.add_argument("--batch-size", type=int, default=32)
    x.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    x.add_argument("--cache", default=None, help="per-video feature cache (default <home>/cache/extract)")
    x.add_argument("--json", action="store_true", help="print the report as one JSON object")
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    x.set_defaults(func=cmd_extract)

    v = dsub.add_parser("verify", parents=[home], help="recompute each benchmark file's fingerprint from its "
                                                        "values and compare it with the one it records")
    v.add_argument("--dataset", action="append", default=None,
                   help="an imported or extracted benchmark (repeatable; default: every one in the data home)")
    v.set_defaults(func=cmd_verify)

    ds = sub.add_parser("datasets", parents=[home], help="list datasets")
    ds.set_defaults(func=cmd_datasets)
    m = sub.add_parser("methods", help="list methods")
    m.set_defaults(func=cmd_methods)

    from avbench.results.formats import FORMATS
    from avbench.results.leaderboard import METRICS

    sw = sub.add_parser("sweep", parents=[home, db], help="hyperparameter sweep (Ray Tune + Optuna), finals to the store")
    sw.add_argument("--method", required=True, type=str.lower)
    sw.add_argument("--dataset", required=True)
    sw.add_argument("--trials", type=int, default=20)
    sw.add_argument("--seeds", type=int, default=3,
                    help="final runs of the best configuration, on the seeds after the search seeds (K..K+S-1)")
    sw.add_argument("--search-seeds", type=int, default=1,
                    help="seeds every trial trains with (0..K-1), reporting their mean validation metrics")
    sw.add_argument("--max-concurrent", type=int, default=None)
    sw.add_argument("--gpus-per-trial", type=float, default=0.25, help="used only when CUDA is present")
    sw.add_argument("--cpus-per-trial", type=float, default=1.0)
    sw.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    sw.add_argument("--storage", default=None, help="Optuna storage URL (default: a journal file in the data home)")
    sw.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite in the data home)")
    sw.add_argument("--name", default=None, help="sweep name (default method-dataset-protocol); rerun to resume")
    sw.add_argument("--protocol", default=DEFAULT_PRESET, choices=PROTOCOLS,
                    help="a preset (one protocol for every method) or reference (each method's own code's protocol)")
    sw.add_argument("--epochs", type=int, default=None)
    sw.add_argument("--batches-per-epoch", type=int, default=None)
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fixed settings (not searched)")
    sw.add_argument("--legacy-text-order", action="store_true")
    sw.add_argument("--memory-budget", default=None, metavar="SIZE",
                    help="feature bytes each trial may keep in memory (default: the node's default budget shared by "
                         "the concurrent trials); larger splits are streamed from the file")
    sw.add_argument("--json", action="store_true")
    sw.add_argument("--quiet", action="store_true")
    sw.set_defaults(func=cmd_sweep)

    su = sub.add_parser("suite", help="a whole benchmark (leaderboards/suites/*.yaml): its sweeps in one Ray job")
    susub = su.add_subparsers(dest="suite_command", required=True)
    for what, text in (("run", "run or resume every sweep of the suite, then its leaderboard"),
                       ("status", "each sweep's state, without running anything")):
        sp = susub.add_parser(what, parents=[home, db], help=text)
        sp.add_argument("suite", help="a suite name (leaderboards/suites/NAME.yaml) or a YAML file")
        sp.add_argument("--storage", default=None, help="Optuna storage URL (default: journal files in the data home)")
        sp.add_argument("--json", action="store_true")
        if what == "run":
            sp.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
            sp.add_argument("--tracking-uri", default=None,
                            help="MLflow tracking URI (default: sqlite in the data home)")
            sp.add_argument("--out", default=None, help="leaderboard folder (default <home>/suites/<suite>)")
            sp.add_argument("--log-every", type=float, default=30.0,
                            help="seconds between progress lines when stderr is not a terminal")
            sp.add_argument("--quiet", action="store_true")
        sp.set_defaults(func=cmd_suite)

    ui = sub.add_parser("ui", parents=[home], help="the MLflow UI on avbench's tracking store")
    ui.add_argument("--tracking-uri", default=None)
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)

    lbp = sub.add_parser("leaderboard", parents=[home, db], help="the leaderboard across methods and benchmarks")
    lbp.add_argument("--dataset", action="append", default=[], help="only these datasets (repeatable)")
    lbp.add_argument("--metric", default="HM", choices=METRICS)
    lbp.add_argument("--format", default="table", choices=FORMATS)
    lbp.add_argument("--out", default=None, help="write leaderboard.<format> files into this folder")
    lbp.add_argument("--reported", action="store_true", help="show published numbers beside the reproduced ones")
    lbp.add_argument("--entry", action="append", default=[],
                     help="show these entries (repeatable; default: per method and dataset the latest full-budget "
                          "sweep entry, else the latest entry)")
    lbp.set_defaults(func=cmd_leaderboard)

    rs = sub.add_parser("results", parents=[home, db], help="list stored results (or delete an entry)")
    rs.add_argument("--dataset", action="append", default=[])
    rs.add_argument("--method", action="append", default=[], type=str.lower)
    rs.add_argument("--entry", action="append", default=[], help="only these entries (repeatable)")
    rs.set_defaults(func=cmd_results, results_command="list")
    rsub = rs.add_subparsers(dest="results_command")
    rdel = rsub.add_parser("delete", parents=[home, db], help="remove every result of one entry")
    rdel.add_argument("--entry", dest="entry_name", required=True)
    rdel.set_defaults(func=cmd_results, results_command="delete")

    pl = sub.add_parser("plot", parents=[home, db], help="figures (PNG and SVG)")
    pl.add_argument("kind", choices=["metric", "beta", "epochs", "cd"],
                    help="metric: per method and dataset with CI bars; beta: S vs U over β for --result; "
                         "epochs: validation HM per epoch for --result; cd: critical-difference diagram of the "
                         "methods' mean ranks across datasets (Friedman + Nemenyi)")
    pl.add_argument("--entry", action="append", default=[], help="metric/cd: only these entries (repeatable)")
    pl.add_argument("--result", type=int, default=None, help="result id (see `avbench results`)")
    pl.add_argument("--metric", default="HM", choices=METRICS)
    pl.add_argument("--dataset", action="append", default=[])
    pl.add_argument("--out", default="plots", help="output folder (default ./plots)")
    pl.set_defaults(func=cmd_plot)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AvbenchError as e:
        print(f"avbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
