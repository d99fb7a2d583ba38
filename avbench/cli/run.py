"""``avbench run``: train and evaluate one method, store and print its result."""

from __future__ import annotations

import json
import sys

from avbench.cli import _console, _parse_sets


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
        from avbench.protocol.config import resolve_config
        from avbench.results.rows import config_hash
        from avbench.results.store import Store

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
        chose = _search_seed_of(store, {**planned, "seed": args.seed, "config": config})
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
        if rec.val:  # in stage 2 (stage2_lr=val-plateau) the validation videos are training data
            what = "val HM" if stage == "stage 1" else "val HM (trained on; sets the LR)"
            info += f"  {what} {100 * rec.val['HM']:.2f} (β {rec.val['beta']:.2f})"
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
    from avbench.results.leaderboard import IDENTITY, choice, searched_by

    # the sweeps' finals of this method on this dataset: their configuration may differ in threads only
    same = store.rows(columns=[*IDENTITY, "config", "entry", "search_seeds"], method=row["method"],
                      dataset=row["dataset"], entry_kind="sweep")
    return sorted(searched_by(same).get(choice(row), {}).get(int(row["seed"]), ()))


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
