"""AVCA epoch time of the public reference code against avbench, on this machine, back to back.

Runs the unmodified ``main.py`` of a local checkout of ExplainableML/AVCA-GZSL
(``--code DIR``; nothing of it is copied here) for one epoch of 500 × 256 pairs on a
synthetic benchmark written in its folder layout with UCF-GZSL's sizes (30 / 12 / 9
classes, 3174 training videos, 512-d audio and video), with the flags of its
``run_scripts/UCF-GZSL/avca.sh`` (main features) on the CPU. Its ``train_step`` and
``val_step`` are timed from outside (wrapped, not edited). Then
``benchmarks/epoch_speed.py`` times avbench's AVCA epoch and validation pass on the
same sizes.

A shared machine's speed drifts, and not alike for the two codes (the reference is
bound by its Python data loading, avbench by matrix products and memory traffic), so one
pair of runs can move the ratio by 20 %. The runs therefore alternate: avbench, then
``--rounds`` times (reference, avbench). Each reference run is compared with the mean of
the avbench runs just before and just after it, and the speed-up is the median of these
per-round ratios (all of them are in the output: far apart, the machine was not steady).
One JSON line gives the figures:

    {"speedup": median of (reference train + val) / (avbench epoch + val) over the rounds,
     "speedup_rounds": [...], "speedup_train": ..., "reference_train_s": ..., "reference_val_s": ...,
     "reference_train_s_runs": [...], "avbench_epoch_s": ..., "avbench_val_s": ...,
     "avbench_epoch_s_runs": [...], "reference_peak_rss_mb": ..., "avbench_peak_rss_mb": ..., "cpu": ...}

(the single figures are medians over the runs).

Two shims let the 2022 code run on a current torch, applied when it is imported:
a placeholder ``torchvision`` module (imported by its ``src/model.py`` for other
methods, unused by AVCA) and ``ReduceLROnPlateau`` without the ``verbose`` argument
(removed from torch). The reference code also needs ``einops``, ``ptflops`` and
``tensorboard`` (``pip install einops ptflops tensorboard``).
Usage: python benchmarks/reference_epoch.py --code ~/src/AVCA-GZSL [--batches 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SHIM = r"""
import os, resource, runpy, sys, time, types
sys.path.insert(0, os.getcwd())
tv = types.ModuleType("torchvision"); tv.models = types.ModuleType("torchvision.models")
sys.modules["torchvision"] = tv; sys.modules["torchvision.models"] = tv.models
import torch.optim.lr_scheduler as ls
class _Plateau(ls.ReduceLROnPlateau):
    def __init__(self, *a, verbose=None, **k):
        super().__init__(*a, **k)
ls.ReduceLROnPlateau = _Plateau
import src.train as T
def _timed(f, name):
    def g(*a, **k):
        t = time.perf_counter(); r = f(*a, **k)
        print(f"AVBENCH_TIME {name} {time.perf_counter() - t:.3f}", flush=True); return r
    return g
T.train_step, T.val_step = _timed(T.train_step, "train"), _timed(T.val_step, "val")
sys.argv = ["main.py"] + sys.argv[1:]
try:
    runpy.run_path("main.py", run_name="__main__")
finally:  # the peak of this process and of its DataLoader workers, the largest of them
    kb = max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(f"AVBENCH_PEAK_KB {kb}", flush=True)
"""

# run_scripts/UCF-GZSL/avca.sh, first stage, main features (epochs 1, on the CPU)
FLAGS = ("--feature_extraction_method main_features --input_size_audio 512 --input_size_video 512 --epochs 1 "
         "--lr_scheduler --dataset_name UCF --zero_shot_split main_split --AVCA --lr 0.001 "
         "--embeddings_hidden_size 512 --decoder_hidden_size 512 --embedding_dropout 0.2 --decoder_dropout 0.3 "
         "--additional_dropout 0.5 --depth_transformer 1 --additional_triplets_loss --first_additional_triplet 1 "
         "--second_additional_triplet 1 --momentum 0.1 --reg_loss --device cpu")


def avbench_epoch(batches: int) -> dict:
    """``benchmarks/epoch_speed.py`` in a child process: its JSON line."""
    script = Path(__file__).with_name("epoch_speed.py")
    run = subprocess.run([sys.executable, str(script), "--device", "cpu", "--batches", str(batches)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
        sys.exit(f"{script} failed (exit {run.returncode}): {tail[0]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def reference_epoch(code: Path, root: Path, batches: int) -> dict:
    """One run of the reference code: its train and val seconds (train scaled to 500 batches)
    and peak memory."""
    name = f"avbench-speed-{os.getpid()}"
    run = subprocess.run(
        [sys.executable, "-c", SHIM, "--root_dir", str(root), "--n_batches", str(batches), "--exp_name", name,
         *FLAGS.split()],
        cwd=code, capture_output=True, text=True,
    )
    shutil.rmtree(code / "runs" / name, ignore_errors=True)
    peak = re.search(r"AVBENCH_PEAK_KB (\d+)", run.stdout)
    times = dict(re.findall(r"AVBENCH_TIME (\w+) ([0-9.]+)", run.stdout + run.stderr))
    if run.returncode != 0 or not {"train", "val"} <= set(times):
        tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
        sys.exit(f"the reference code failed (exit {run.returncode}): {tail[0]}")
    return {"train_s": float(times["train"]) * 500 / batches, "val_s": float(times["val"]),
            "peak_rss_mb": round(int(peak.group(1)) / 1024, 1) if peak else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", required=True, help="a checkout of github.com/ExplainableML/AVCA-GZSL")
    ap.add_argument("--batches", type=int, default=500,
                    help="batches per epoch (default 500; the reference's validation loop also draws this many "
                         "batches, so its validation time, and the ratio, are comparable only at 500)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="reference runs, each between two avbench runs (default 3: about 12 minutes on 2 cores)")
    args = ap.parse_args()
    if args.batches < 1:
        ap.error(f"--batches {args.batches}: expected a positive number of batches")
    if args.rounds < 1:
        ap.error(f"--rounds {args.rounds}: expected a positive number of rounds")
    code = Path(args.code).expanduser().resolve()
    if not (code / "main.py").is_file() or not (code / "src" / "model_improvements.py").is_file():
        sys.exit(f"--code {code}: not an AVCA-GZSL checkout (no main.py and src/model_improvements.py)")

    from avbench.data.synthetic import SyntheticSpec, write_avca_layout
    from avbench.protocol.machine import cpu_name

    spec = SyntheticSpec(n_seen=30, n_val_unseen=12, n_test_unseen=9, train_per_class=106, val_seen_per_class=12,
                         val_unseen_per_class=122)
    # the reference caches parsed features here and never invalidates them: remove what this run made
    cache = code / "avgzsl_benchmark_datasets" / "UCF" / "_features_processed" / "main_features"
    cache_existed = cache.exists()
    ours, refs = [avbench_epoch(args.batches)], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = write_avca_layout(Path(tmp) / "data", "UCF", spec)
            for _ in range(args.rounds):
                refs.append(reference_epoch(code, root, args.batches))
                ours.append(avbench_epoch(args.batches))
    finally:
        if not cache_existed:
            shutil.rmtree(cache, ignore_errors=True)

    def around(i: int, key: str) -> float:  # avbench's figure around reference run i: the runs before and after
        return (ours[i][key] + ours[i + 1][key]) / 2

    rounds = [(r["train_s"] + r["val_s"]) / (around(i, "epoch_s") + around(i, "val_s")) for i, r in enumerate(refs)]
    rounds_train = [r["train_s"] / around(i, "epoch_s") for i, r in enumerate(refs)]
    peaks = [r["peak_rss_mb"] for r in refs if r["peak_rss_mb"] is not None]
    median = statistics.median
    print(json.dumps({
        "speedup": round(median(rounds), 2), "speedup_rounds": [round(x, 2) for x in rounds],
        "speedup_train": round(median(rounds_train), 2),
        "reference_train_s": round(median(r["train_s"] for r in refs), 2),
        "reference_val_s": round(median(r["val_s"] for r in refs), 2),
        "reference_train_s_runs": [round(r["train_s"], 2) for r in refs],
        "avbench_epoch_s": round(median(o["epoch_s"] for o in ours), 3),
        "avbench_val_s": round(median(o["val_s"] for o in ours), 4),
        "avbench_epoch_s_runs": [o["epoch_s"] for o in ours], "threads": ours[-1]["threads"],
        "reference_peak_rss_mb": max(peaks) if peaks else None,
        "avbench_peak_rss_mb": max(o["peak_rss_mb"] for o in ours), "cpu": cpu_name(),
    }))


if __name__ == "__main__":
    main()
