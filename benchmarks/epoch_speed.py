"""Seconds per AVCA epoch (training only) and per validation pass, on this device.

An epoch is 500 batches of 256 (positive, negative) pairs with UCF-GZSL
dimensions (audio 512, video 512, text 300; 30 training classes); the validation
pass scores 353 + 1467 videos (UCF's val seen + val unseen) against 42 classes
over the 16-value β grid. Prints one JSON line:

    {"device": ..., "epoch_s": ..., "val_s": ..., "protocol": ..., "machine": ..., "linear": ...}

(``machine``: the CPU or GPU model, see ``avbench.protocol.machine``; a time means
little without it. ``linear``: the library of the linear layers' products,
``avbench.methods.onednn``.)

``--protocol reference`` times AVCA's reference protocol (its code's extra
BatchNorm passes, independent negatives, the β of every output); the default is
the platform mode (preset avca2022).
Targets on a 2-core CPU: epoch + validation <= 24 s, validation <= 0.25 s (platform mode).
Usage: python benchmarks/epoch_speed.py [--device cpu|cuda] [--batches 500] [--negatives batch|independent]
       [--protocol avca2022|reference] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from avbench.data.synthetic import SyntheticSpec, synthetic_benchmark
from avbench.methods import get_method
from avbench.methods.base import Dims
from avbench.methods.onednn import engine
from avbench.protocol.metrics import beta_grid
from avbench.protocol.presets import PLATFORM_OPTIONS, PROTOCOLS, get_preset, resolve_protocol
from avbench.protocol.machine import hardware, pick_device
from avbench.protocol.config import resolve_config
from avbench.protocol.trainer import EvalSet, TrainSet, train, validation_record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--batches", type=int, default=500)
    ap.add_argument("--negatives", default=None, choices=["batch", "independent"],
                    help="default: the protocol's (batch; independent in reference mode)")
    ap.add_argument("--protocol", default="avca2022", choices=PROTOCOLS)
    ap.add_argument("--repeats", type=int, default=20, help="validation passes to average")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's, one per core; `avbench run` defaults to 1)")
    args = ap.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            ap.error(f"--threads {args.threads}: expected a positive number of threads")
        torch.set_num_threads(args.threads)
    preset, options, mode = resolve_protocol("avca", args.protocol, "ucf", "main")
    rules = {**PLATFORM_OPTIONS, **options}
    dev = pick_device(args.device)
    # UCF-GZSL stage-1 sizes: 3174 train / 353 val-seen (30 classes), 1467 val-unseen (12 classes)
    spec = SyntheticSpec(n_seen=30, n_val_unseen=12, n_test_unseen=9,
                         train_per_class=106, val_seen_per_class=12, val_unseen_per_class=122)
    bench = synthetic_benchmark(spec)
    emb = bench.embeddings()
    cfg = resolve_config("avca", "ucf", "main", {"negatives": args.negatives} if args.negatives else {},
                         protocol_options=options)
    tr = TrainSet.build(bench.split("stage_1_train"), emb, dev)
    val = EvalSet.build(bench.split("stage_1_val_seen"), bench.split("stage_1_val_unseen"), tr.classes, emb, dev)
    torch.manual_seed(0)
    model = get_method("avca")(Dims(bench.audio_dim, bench.video_dim, bench.text_dim), cfg).to(dev)
    kw = dict(batch_size=256, seed=0, negatives=cfg["negatives"])
    train(model, tr, epochs=1, batches_per_epoch=20, **kw)  # warm-up
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t, c = time.perf_counter(), time.process_time()
    train(model, tr, epochs=1, batches_per_epoch=args.batches, **kw)
    sync()
    epoch_s = (time.perf_counter() - t) * 500 / args.batches
    # CPU seconds of this process: on a shared machine steadier than wall time (CPU device only)
    epoch_cpu_s = (time.process_time() - c) * 500 / args.batches
    p = get_preset(preset)
    betas = beta_grid(p.beta_stop, p.beta_num)
    validation_record(model, val, betas, 4096, rules["beta_rule"])
    sync()
    t = time.perf_counter()
    for _ in range(args.repeats):
        validation_record(model, val, betas, 4096, rules["beta_rule"])
    sync()
    val_s = (time.perf_counter() - t) / args.repeats
    print(json.dumps({"device": str(dev), "epoch_s": round(epoch_s, 3), "epoch_cpu_s": round(epoch_cpu_s, 3),
                      "val_s": round(val_s, 4),
                      "protocol": args.protocol, "mode": mode, "negatives": cfg["negatives"],
                      "bn_passes": cfg["bn_passes"], "threads": torch.get_num_threads(), "machine": hardware(dev),
                      "linear": engine(dev),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
