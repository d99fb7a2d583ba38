"""``avbench data import|extract|verify``, ``datasets`` and ``methods``: benchmark files and the methods."""

from __future__ import annotations

import json
import sys

from avbench.cli import _console


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
