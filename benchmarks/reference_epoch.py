"""AVCA epoch time of the public reference code against avbench, on this machine, back to back.

Runs the unmodified ``main.py`` of a local checkout of ExplainableML/AVCA-GZSL
(``--code DIR``; nothing of it is copied here) for one epoch of 500 × 256 pairs on a
synthetic benchmark written in its folder layout with UCF-GZSL's sizes (30 / 12 / 9
classes, 3174 training videos, 512-d audio and video), with the flags of its
``run_scripts/UCF-GZSL/avca.sh`` (main features) on the CPU. Its ``train_step`` and
``val_step`` are timed from outside (wrapped, not edited). Then
``benchmarks/epoch_speed.py`` times avbench's AVCA epoch and validation pass on the
same sizes, once before the reference run and once after it: their mean is compared, so
a shared machine whose speed drifts during the run biases the ratio less (both runs are
in the output; far apart, the machine was not steady). One JSON line gives the figures
and their ratio:

    {"reference_train_s": ..., "reference_val_s": ..., "avbench_epoch_s": ..., "avbench_val_s": ...,
     "avbench_epoch_s_runs": [before, after],
     "speedup": (reference train + val) / (avbench epoch + val), "speedup_train": ...,
     "reference_peak_rss_mb": ..., "avbench_peak_rss_mb": ..., "cpu": ...}

Two shims let the 2022 code run on a current torch, applied when it is imported:
a placeholder ``torchvision`` module (imported by its ``src/model.py`` for other
methods, unused by AVCA) and ``ReduceLROnPlateau`` without the ``verbose`` argument
(removed from torch). The reference code also needs ``einops``, ``ptflops`` and
``tensorboard`` (``pip install einops ptflops tensorboard``).
Usage: python benchmarks/reference_epoch.py --code ~/src/AVCA-GZSL [--batches 500]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", required=True, help="a checkout of github.com/ExplainableML/AVCA-GZSL")
    ap.add_argument("--batches", type=int, default=500)
    args = ap.parse_args()
    if args.batches < 1:
        ap.error(f"--batches {args.batches}: expected a positive number of batches")
    code = Path(args.code).expanduser().resolve()
    if not (code / "main.py").is_file() or not (code / "src" / "model_improvements.py").is_file():
        sys.exit(f"--code {code}: not an AVCA-GZSL checkout (no main.py and src/model_improvements.py)")

    from avbench.data.synthetic import SyntheticSpec, write_avca_layout
    from avbench.protocol.machine import cpu_name

    before = avbench_epoch(args.batches)  # avbench before and after the reference: see the docstring
    spec = SyntheticSpec(n_seen=30, n_val_unseen=12, n_test_unseen=9, train_per_class=106, val_seen_per_class=12,
                         val_unseen_per_class=122)
    # the reference caches parsed features here and never invalidates them: remove what this run made
    cache = code / "avgzsl_benchmark_datasets" / "UCF" / "_features_processed" / "main_features"
    cache_existed = cache.exists()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_avca_layout(Path(tmp) / "data", "UCF", spec)
        run = subprocess.run(
            [sys.executable, "-c", SHIM, "--root_dir", str(root), "--n_batches", str(args.batches),
             "--exp_name", f"avbench-speed-{os.getpid()}", *FLAGS.split()],
            cwd=code, capture_output=True, text=True,
        )
        shutil.rmtree(code / "runs" / f"avbench-speed-{os.getpid()}", ignore_errors=True)
        if not cache_existed:
            shutil.rmtree(cache, ignore_errors=True)
    peak = re.search(r"AVBENCH_PEAK_KB (\d+)", run.stdout)
    ref_peak_mb = round(int(peak.group(1)) / 1024, 1) if peak else None
    times = dict(re.findall(r"AVBENCH_TIME (\w+) ([0-9.]+)", run.stdout + run.stderr))
    if run.returncode != 0 or not {"train", "val"} <= set(times):
        tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
        sys.exit(f"the reference code failed (exit {run.returncode}): {tail[0]}")
    after = avbench_epoch(args.batches)
    epoch_s = (before["epoch_s"] + after["epoch_s"]) / 2
    val_s = (before["val_s"] + after["val_s"]) / 2
    ref_train, ref_val = float(times["train"]) * 500 / args.batches, float(times["val"])
    print(json.dumps({
        "reference_train_s": round(ref_train, 2), "reference_val_s": round(ref_val, 2),
        "avbench_epoch_s": round(epoch_s, 3), "avbench_val_s": round(val_s, 4),
        "avbench_epoch_s_runs": [before["epoch_s"], after["epoch_s"]], "threads": after["threads"],
        "speedup": round((ref_train + ref_val) / (epoch_s + val_s), 2),
        "speedup_train": round(ref_train / epoch_s, 2),
        "reference_peak_rss_mb": ref_peak_mb,
        "avbench_peak_rss_mb": max(before["peak_rss_mb"], after["peak_rss_mb"]), "cpu": cpu_name(),
    }))


if __name__ == "__main__":
    main()
