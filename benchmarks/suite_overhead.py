"""A suite in one command against the same sweeps as one command each, timed as a user runs them.

Writes the suite (default: the synthetic demo, ``leaderboards/suites/synthetic.yaml``,
optionally cut to some methods and datasets) to a temporary YAML file and runs

- ``avbench suite run FILE --json`` in a fresh data home, then
- for every runnable (method, dataset) pair of it, ``avbench sweep ... --json`` with the
  same name, trials, seeds, search seeds, protocol and budget, one after another in
  another fresh home: what a user ran before suites existed,

each timed from outside (process start to exit: imports, Ray start and shutdown,
MLflow, Optuna and the store included), and prints one JSON line:

- ``suite_wall_s`` / ``sequential_sum_s`` and their ratio (target <= 0.7);
- ``overhead_share``: 1 - busy / (suite wall x trial slots), where busy is the time
  trials and finals spend in training and validation (measured inside them); idle
  slots, process and Ray start, imports, data loading, MLflow/Optuna/store work count
  as overhead (target <= 5 %);
- ``peak_rss_mb`` of the suite command (its own process), ``worker_peak_rss_mb`` the largest
  peak of its Ray workers (each runs many sweeps' trials and finals).

Measured (2-core AMD EPYC machine, quiet, commit c50f75d): the whole synthetic suite (34
sweeps, 2 skipped) took 842.8 s as one Ray Tune experiment against 1765.1 s as 34 commands
(ratio 0.48); busy 1602 s, overhead 4.95 % (an earlier run without the workers' malloc_trim:
857.7 s, 4.8 %). The suite command's peak RSS was 821 MB, its reused workers' largest peak
3268 MB (4342 MB before malloc_trim). What the overhead still holds: the command's start
(about 14 s before the first trial: imports, Ray's own start about 6.5 s, MLflow), a trial's
report waiting for the driver (about 30 ms each), the switch between two trials on a worker
(0.01-0.2 s) and the suite's end (leaderboard, Ray shutdown). Figures from before 5a209a2
undercounted busy: a trial's last report, on which ASHA stops it, was not counted.

Usage: python benchmarks/suite_overhead.py [--suite synthetic] [--methods avca,cjme] [--datasets synthetic]
       [--trials N] [--seeds S] [--epochs E] [--batches B] [--no-sequential]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from avbench.search.suite import load_suite, plan


def _timed(cmd: list[str], env: dict) -> tuple[float, dict]:
    t = time.time()
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.time() - t
    if run.returncode != 0:
        tail = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"{' '.join(cmd[:4])} ... failed (exit {run.returncode}): {tail}")
    return wall, json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="synthetic")
    ap.add_argument("--methods", default=None, help="comma-separated subset of the suite's methods")
    ap.add_argument("--datasets", default=None, help="comma-separated subset of the suite's datasets")
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batches", type=int, default=None)
    ap.add_argument("--no-sequential", action="store_true", help="only the suite")
    args = ap.parse_args()
    suite = load_suite(args.suite)
    doc = yaml.safe_load(Path(suite.path).read_text())
    doc["name"] = suite.name
    if args.methods:
        doc["methods"] = [m for m in suite.methods if m in args.methods.split(",")]
    if args.datasets:
        doc["datasets"] = [d for d in suite.datasets if d in args.datasets.split(",")]
    if args.trials:
        doc["trials"] = args.trials
    if args.seeds:
        doc["seeds"] = args.seeds
    budget = doc.setdefault("budget", {})
    for d in doc.get("datasets", []):
        row = budget.setdefault(d, dict(budget.get("default", {})))
        if args.epochs:
            row["epochs"] = args.epochs
        if args.batches:
            row["batches_per_epoch"] = args.batches
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    avbench = [sys.executable, "-m", "avbench.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{suite.name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        wall, s = _timed(avbench + ["suite", "run", str(path), "--home", f"{tmp}/suite", "--json", "--quiet"], env)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out = {
            "suite": suite.name, "sweeps": s["done"], "skipped": s["skipped"], "failed": s["failed"],
            "trials_per_sweep": s["sweeps"][0].get("trials") if s["sweeps"] else None, "slots": s["slots"],
            "suite_wall_s": round(wall, 1), "suite_inner_wall_s": round(s["wall_seconds"], 1),
            "busy_s": round(s["busy_seconds"], 1),
            "overhead_share": round(1 - s["busy_seconds"] / (wall * s["slots"]), 4),
            "peak_rss_mb": round(peak, 1),
            # the largest peak RSS of the suite's reused Ray workers, as they reported it
            "worker_peak_rss_mb": round(s["worker_peak_rss_mb"], 1) if s.get("worker_peak_rss_mb") else None,
        }
        print(json.dumps(out), file=sys.stderr, flush=True)  # the suite's figures, before the long sequential part
        if not args.no_sequential:
            total = 0.0
            for item in plan(load_suite(str(path)), home=f"{tmp}/seq"):
                if item.spec is None:
                    continue
                sp = item.spec
                cmd = avbench + [
                    "sweep", "--method", sp.method, "--dataset", sp.dataset, "--trials", str(sp.trials),
                    "--seeds", str(sp.seeds), "--search-seeds", str(sp.search_seeds), "--name", sp.name,
                    "--protocol", sp.protocol, "--cpus-per-trial", str(sp.cpus_per_trial),
                    "--home", f"{tmp}/seq", "--json", "--quiet",
                ] + [a for k, v in sp.overrides.items() for a in ("--set", f"{k}={v}")]
                cmd += ["--legacy-text-order"] if sp.text_order == "legacy" else []
                total += _timed(cmd, env)[0]
            out.update({"sequential_sum_s": round(total, 1), "ratio": round(wall / total, 3)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
