"""Leaderboard compile time over a store of 10,000 results.

Fills a fresh SQLite store (or --db URL) with 10,000 results: 12 methods x 3
datasets x 2 feature sets x 2 protocols x 2 text orders x ~35 seeds, then times
what `avbench leaderboard` does: the query (and each distinct configuration, 40
settings), compiling every table (means, stds, confidence intervals,
ranks, significance tests) and rendering. Prints one JSON line. Target <= 1 s on a
2-core machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from datetime import datetime, timedelta, timezone

import numpy as np

from avbench.results import leaderboard as lb
from avbench.results.formats import render
from avbench.results.store import Store

METHODS = ["ale", "sje", "devise", "apn", "f-vaegan-d2", "cjme", "avgzslnet", "avca", "tcaf", "clipclap", "mft",
           "ez-avgzl"]


# a configuration of a resolved config's size (AVCA's has 40 settings); the leaderboard reads each distinct
# one to match runs with sweeps' search seeds. Not resolve_config: its torch import would dwarf the peak memory
CONFIG = {**{f"setting_{i:02d}": 0.1 * i for i in range(38)}, "threads": 1, "eval_batch_size": 4096}


def fill(store: Store, n: int) -> None:
    rng = np.random.default_rng(0)
    combos = list(itertools.product(METHODS, ["ucf", "activitynet", "vggsound"], ["main", "cls"],
                                    ["avca2022", "clipclap2024"], ["by-name", "legacy"]))
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = []
    for i in range(n):
        m, d, f, p, t = combos[i % len(combos)]
        hm = float(rng.uniform(5, 60))
        rows.append({
            "method": m, "dataset": d, "features": f, "protocol": p, "text_order": t, "seed": i // len(combos),
            "S": hm + 10, "U": hm - 3, "HM": hm, "ZSL": hm * 0.8, "beta": 1.0, "best_epoch": 10,
            "config": CONFIG, "config_hash": "cfg", "data_fingerprint": "fp", "avbench_version": "bench",
            "git_revision": None, "torch_version": None, "ray_version": None, "optuna_version": None,
            "mlflow_version": None, "device": "cpu", "seconds": 1.0, "mlflow_run_id": None, "details": {},
            "created_at": t0 + timedelta(seconds=i),
        })
    for k in range(0, n, 2000):
        store.add_rows(rows[k : k + 2000])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=None)
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.db or f"sqlite:///{tmp}/bench.db")
        if store.count() < args.n:
            fill(store, args.n - store.count())
        times = []
        for _ in range(3):
            t = time.perf_counter()
            rows = lb.board_rows(store, "HM")
            boards = lb.compile_boards(rows, metric="HM")
            for fmt in ("md", "html"):
                render(boards, fmt)
            times.append(time.perf_counter() - t)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(json.dumps({"results": store.count(), "tables": len(boards), "peak_rss_mb": round(peak, 1),
                          "compile_s": round(min(times), 4),
                          "compile_s_first": round(times[0], 4)}))
        store.engine.dispose()


if __name__ == "__main__":
    main()
