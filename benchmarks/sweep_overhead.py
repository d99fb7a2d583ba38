"""Share of a sweep's wall time spent outside trial training (Ray, Optuna, MLflow, store).

Runs a small AVCA sweep on the built-in synthetic benchmark in a fresh data home
and prints one JSON line. ``busy`` is the time trials and finals spend in
training and validation (measured inside them); capacity is wall time x the
number of concurrent trial slots; overhead = 1 - busy / capacity (idle slots at
the tail of the sweep count as overhead). Target <= 5 %.

Usage: python benchmarks/sweep_overhead.py [--trials 8] [--epochs 10] [--batches 100] [--search-seeds 1]

Measured on the 2-core machine: 4.5 % with the defaults (a 4.5-minute sweep); 6.8 % with
--epochs 6 (3 minutes): the rest is fixed cost (Ray start, imports, fresh final workers).
"""

from __future__ import annotations

import argparse
import json
import tempfile

from avbench.search.sweep import SweepSpec, sweep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--search-seeds", type=int, default=1, help="seeds each trial trains with")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batches", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        spec = SweepSpec(method="avca", dataset="synthetic", trials=args.trials, seeds=args.seeds,
                         search_seeds=args.search_seeds, home=home,
                         overrides={"epochs": args.epochs, "batches_per_epoch": args.batches})
        s = sweep(spec, live=False)
    capacity = s["wall_seconds"] * s["slots"]
    print(json.dumps({
        "trials": s["trials"], "slots": s["slots"], "wall_s": round(s["wall_seconds"], 2),
        "busy_s": round(s["busy_seconds"], 2), "overhead_share": round(1 - s["busy_seconds"] / capacity, 4),
    }))


if __name__ == "__main__":
    main()
