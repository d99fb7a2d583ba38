"""``avbench leaderboard``, ``results`` and ``plot``: read the results store."""

from __future__ import annotations

import sys

from avbench.cli import _console
from avbench.errors import ConfigError


def cmd_leaderboard(args) -> int:
    from avbench.results import leaderboard as lb
    from avbench.results.formats import FORMATS, render, render_table, write
    from avbench.results.reported import load_reported
    from avbench.results.store import Store

    store = Store(args.db, args.home)
    rows = lb.board_rows(store, args.metric, dataset=args.dataset or None)
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

        rows = lb.board_rows(store, args.metric, dataset=args.dataset or None)
        boards = lb.compile_boards(rows, metric=args.metric, datasets=args.dataset or None, entries=args.entry or None)
        paths = plots.metric_bars(boards, args.out)
    elif args.kind == "cd":
        from avbench.results import leaderboard as lb

        rows = lb.board_rows(store, args.metric, dataset=args.dataset or None)
        boards = lb.compile_boards(rows, metric=args.metric, datasets=args.dataset or None, entries=args.entry or None)
        paths = plots.cd_diagrams(boards, args.out)
    else:
        if args.result is None:
            raise ConfigError(f"avbench plot {args.kind}: --result ID is required (ids: `avbench results`)")
        row = store.get(args.result)
        paths = (plots.beta_curve if args.kind == "beta" else plots.val_per_epoch)(row, args.out)
    _console().print("wrote " + ", ".join(str(p) for p in paths))
    return 0
