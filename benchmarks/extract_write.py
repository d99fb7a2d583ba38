"""Peak memory of writing an extracted benchmark: streamed from the feature cache against all in memory.

``avbench data extract`` writes its benchmark from the per-video feature cache,
``WRITE_VIDEOS`` videos at a time, through the import's streaming writer. This fills a
feature cache with ``--videos`` random videos of CLIP ViT-B/32 (512-d) video and CLAP
(512-d) audio features, ``--steps`` per-second steps each (1: middle-frame features), in
``--classes`` classes, then in a fresh process each:

- ``streamed``: :func:`avbench.data.extract.write_benchmark` (what extract runs);
- ``in_memory``: every video's features read into memory first, one in-memory
  :class:`Benchmark` (``from_splits``), then ``save``: what extract did before,

and prints one JSON line with each one's seconds and peak RSS (MB), the features'
size and whether both files have the same fingerprint.
Usage: python benchmarks/extract_write.py [--videos 20000] [--steps 10] [--classes 300]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIMS = {"audio": 512, "video": 512}


def _plan(root: Path, videos: int, classes: int):
    from avbench.data.benchmark import STORED_SPLITS

    names = [f"class{c:03d}" for c in range(classes)]
    ids = [f"v{i:06d}" for i in range(videos)]
    klass = {v: names[i % classes] for i, v in enumerate(ids)}
    per_split = {s: [v for i, v in enumerate(ids) if i % len(STORED_SPLITS) == k] for k, s in enumerate(STORED_SPLITS)}
    paths = {v: root / "videos" / f"{v}.mp4" for v in ids}
    return names, klass, per_split, paths


def _cache(root: Path, steps: int):
    from avbench.data.featurize import FeatureCache

    return FeatureCache(root / "cache", {"models": "benchmark"}, "per-second" if steps > 1 else "middle")


def fill(root: Path, videos: int, steps: int, classes: int) -> None:
    _, _, _, paths = _plan(root, videos, classes)
    cache = _cache(root, steps)
    rng = np.random.default_rng(0)
    (root / "videos").mkdir(parents=True)
    for p in paths.values():
        p.write_bytes(b"")
        shape = (steps,) if steps > 1 else ()
        cache.put(p, rng.standard_normal(shape + (DIMS["audio"],), dtype=np.float32),
                  rng.standard_normal(shape + (DIMS["video"],), dtype=np.float32))


def write(root: Path, videos: int, steps: int, classes: int, mode: str) -> dict:
    from avbench.data.benchmark import STORED_SPLITS, Benchmark, Split
    from avbench.data.extract import write_benchmark
    from avbench.data.ragged import Ragged

    names, klass, per_split, paths = _plan(root, videos, classes)
    cache = _cache(root, steps)
    frames = "per-second" if steps > 1 else "middle"
    emb = np.zeros((classes, 8), np.float32)
    out = root / f"{mode}.h5"
    t = time.perf_counter()
    if mode == "streamed":
        fp = write_benchmark(out, name="b", settings_from="vggsound", frames=frames, per_split=per_split,
                             classes=names, klass=klass, paths=paths, cache=cache, embeddings=emb, source="").fingerprint
    else:
        cid = {c: i for i, c in enumerate(names)}
        splits = {}
        for s in STORED_SPLITS:
            feats = [cache.get(paths[v]) for v in per_split[s]]
            a, v = ([Ragged.from_list([f[k] for f in feats]) for k in (0, 1)] if steps > 1
                    else [np.stack([f[k] for f in feats]) for k in (0, 1)])
            splits[s] = Split(name=s, audio=a, video=v, labels=np.array([cid[klass[x]] for x in per_split[s]]),
                              video_ids=np.array(per_split[s]))
        bench = Benchmark.from_splits(name="b", dataset="b", features="temporal-clipclap" if steps > 1 else "clipclap",
                                      class_names=names, embeddings=emb, legacy_embeddings=None, splits=splits,
                                      extra={"settings_from": "vggsound"})
        bench.save(out)
        fp = bench.fingerprint
    return {"seconds": round(time.perf_counter() - t, 2), "fingerprint": fp,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--classes", type=int, default=300)
    ap.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:  # one side, in its own process
        print(json.dumps(write(Path(args.root), args.videos, args.steps, args.classes, args.mode)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        fill(root, args.videos, args.steps, args.classes)
        fill_s = time.perf_counter() - t
        res = {}
        for mode in ("streamed", "in_memory"):
            run = subprocess.run([sys.executable, __file__, "--mode", mode, "--root", tmp, "--videos", str(args.videos),
                                  "--steps", str(args.steps), "--classes", str(args.classes)],
                                 capture_output=True, text=True, check=True)
            res[mode] = json.loads(run.stdout.strip().splitlines()[-1])
    features_mb = args.videos * args.steps * sum(DIMS.values()) * 4 / 2**20
    print(json.dumps({
        "videos": args.videos, "steps": args.steps, "features_mb": round(features_mb, 1), "fill_cache_s": round(fill_s, 1),
        "streamed_s": res["streamed"]["seconds"], "streamed_peak_rss_mb": res["streamed"]["peak_rss_mb"],
        "in_memory_s": res["in_memory"]["seconds"], "in_memory_peak_rss_mb": res["in_memory"]["peak_rss_mb"],
        "same_fingerprint": res["streamed"]["fingerprint"] == res["in_memory"]["fingerprint"],
    }))


if __name__ == "__main__":
    main()
