"""Throughput of `avbench data extract` with tiny random CLIP/CLAP models, on this machine.

Writes ``--videos`` short videos (MPEG-4 + AAC, ``--size`` pixels, ``--fps``,
``--seconds`` long; UCF101's videos are 320x240 at 25 fps, about 7 s), saves tiny
randomly initialised CLIP and CLAP models (no download), extracts them into a
benchmark (own classes, UCF settings) with an empty feature cache, and prints one
JSON line:

    {"videos": ..., "videos_per_s": ..., "decode_share": ..., "decode_s": ..., "encode_s": ...,
     "extract_wall_s": ..., "peak_rss_mb": ..., ...}

``videos_per_s`` counts the feature extraction proper (decoding and encoding, not
loading models, class embeddings or saving). ``decode_share`` is decoding's part of
decode + encode time (summed over videos; decoding runs in ``--workers`` threads
beside the encoders). With real CLIP ViT-B/32 and CLAP models the encoders cost far
more, so decoding's share is lower than here: these numbers bound the pipeline's
own overhead.
Usage: python benchmarks/extract_speed.py [--videos 48] [--seconds 4] [--size 320x240] [--fps 25]
       [--frames middle|per-second] [--max-len N] [--workers 2] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=48)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--frames", default="middle", choices=["middle", "per-second"])
    ap.add_argument("--max-len", type=int, default=None, help="per-second: centre-crop to this many steps")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    from avbench.data.encoders import save_tiny_models
    from avbench.data.extract import ExtractOptions, extract
    from avbench.data.media import write_video

    w, h = (int(x) for x in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        clip, clap = save_tiny_models(tmp / "models")
        for i in range(args.videos):
            c = i % args.classes
            write_video(tmp / "videos" / f"class{c}" / f"video{i:04d}.mp4", seconds=args.seconds, fps=args.fps,
                        size=(w, h), color=(40 * c % 256, 90, 200 - 30 * c % 200), tone_hz=300.0 + 50 * c)
        setup_s = time.perf_counter() - t0
        opts = ExtractOptions(videos=str(tmp / "videos"), name="speed", settings_from="ucf", clip=str(clip),
                              clap=str(clap), home=str(tmp / "home"), frames=args.frames, workers=args.workers,
                              batch_size=args.batch_size, device=args.device, max_len=args.max_len)
        t0 = time.perf_counter()
        _, _, rep = extract(opts)
        total_s = time.perf_counter() - t0
    sec = rep["seconds"]
    out = {
        "videos": rep["extracted"],
        "video": f"{w}x{h} {args.fps} fps {args.seconds:g} s",
        "frames": args.frames,
        "max_len": args.max_len,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "device": rep["device"],
        "torch_threads": torch.get_num_threads(),
        "videos_per_s": rep["videos_per_second"],
        "decode_share": rep["decode_share"],
        "decode_s": sec["decode"],
        "encode_s": sec["encode"],
        "extract_wall_s": sec["wall"],
        "command_wall_s": round(total_s, 3),
        "setup_s": round(setup_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
