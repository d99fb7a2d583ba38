"""``avbench data extract``: a benchmark from raw videos (CLIP video, CLAP audio, CLIP ‖ CLAP text).

Steps (each in its own module):

1. the videos: ``DIR/<Class>/<file>`` or a csv of ``path,class`` (:func:`find_videos`);
2. the split (:mod:`avbench.data.splits`): the public benchmark's (``--split-from``
   with ``--metadata``) or a seeded split of the user's own classes;
3. decoding (:mod:`avbench.data.media`, PyAV) in ``workers`` threads, ahead of
4. the encoders (:mod:`avbench.data.encoders`, transformers CLIP and CLAP), in
   batches on the GPU when there is one, with a per-video cache
   (:mod:`avbench.data.featurize`);
5. the benchmark: written from the feature cache a chunk of videos at a time by the
   import's streaming writer (atomic, bounded memory: features are never all in
   memory) into the data home under ``--name``, where ``avbench datasets``, ``run``
   and ``sweep`` find it.

Resumable: each video's features are cached as one file (written to a temporary
name, then renamed) keyed by the video (path, size, mtime), the models and the
frame mode; a rerun after an interruption skips every cached video. Robust: a video
that cannot be decoded, or has no audio track, is listed in the report and left out.

Settings. Methods take their published per-dataset settings through
``defaults(dataset, features)``. An extracted benchmark is its own dataset (its
name: results are stored and shown under it, never under a published benchmark's
column) and records in ``settings_from`` the published benchmark whose settings
apply (``--split-from``'s, or the explicit ``--settings-from`` for the user's own
classes; :attr:`Benchmark.settings_dataset`). Its features are the CLIP/CLAP family
(``clipclap``; ``temporal-clipclap`` with one frame per second), so every method
runs on it with the settings it uses on that benchmark's CLIP/CLAP features.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from avbench.data.benchmark import STORED_SPLITS, Benchmark
from avbench.data.layout import DEFAULT_MAX_LEN, crop, crop_length, crop_record
from avbench.data.featurize import FeatureCache, extract_features
from avbench.data.media import FRAME_MODES
from avbench.data.splits import DATASETS_WITH_SPLITS, Video, finalise, from_metadata, seeded
from avbench.data.writer import BenchmarkWriter, Written
from avbench.errors import DataError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp", ".ogv", ".wmv"}
# per-second features of long videos are centre-cropped to DEFAULT_MAX_LEN steps, as `avbench data import` does


# -- 1. the videos -------------------------------------------------------------
def find_videos(source: str | os.PathLike) -> tuple[list[Video], int]:
    """The videos and their classes, and how many other files were ignored."""
    source = Path(source).expanduser()
    items: list[tuple[Path, str]] = []
    ignored = 0
    if source.is_dir():
        ignored = sum(1 for p in source.iterdir() if p.is_file())  # files outside class folders
        for cls_dir in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in sorted(cls_dir.rglob("*")):
                if f.is_file() and not f.name.startswith("."):
                    if f.suffix.lower() in VIDEO_SUFFIXES:
                        items.append((f, cls_dir.name))
                    else:
                        ignored += 1
        if not items:
            raise DataError(f"--videos {source}: no videos in class folders (expected {source}/<Class>/<file>, "
                            f"files ending in {', '.join(sorted(VIDEO_SUFFIXES))})")
    elif source.is_file():
        items = _read_csv(source)
    else:
        raise DataError(f"--videos {source}: no such folder or csv file")
    stems: dict[str, int] = {}
    for path, _ in items:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    unique = all(n == 1 for n in stems.values())
    videos = []
    seen: set[str] = set()
    for path, label in items:
        vid = path.stem if unique else f"{label}/{path.stem}"
        if vid in seen:
            raise DataError(f"--videos {source}: video {path} is listed twice (or shares its name with another "
                            f"video of class {label!r})")
        seen.add(vid)
        videos.append(Video(path=path, label=label, video_id=vid))
    return videos, ignored


def _read_csv(path: Path) -> list[tuple[Path, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"--videos {path}: not a text CSV of path,class rows ({e}); give a CSV or a folder of "
                        "class folders") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "class"]:
        rows = [(i + 2, r) for i, r in enumerate(rows[1:])]
    else:
        rows = [(i + 1, r) for i, r in enumerate(rows)]
    out = []
    for line, r in rows:
        if not r or all(not c.strip() for c in r):
            continue
        if len(r) < 2 or not r[0].strip() or not r[1].strip():
            raise DataError(f"{path}: line {line}: expected 'path,class', got {','.join(r)!r}")
        p = Path(r[0].strip()).expanduser()
        out.append((p if p.is_absolute() else path.parent / p, r[1].strip()))
    if not out:
        raise DataError(f"{path}: no rows (expected a csv of path,class)")
    return out


# -- 5. the benchmark --------------------------------------------------------------
WRITE_VIDEOS = 256  # videos read back from the feature cache and handed to the writer at a time


def write_benchmark(path: Path, *, name: str, settings_from: str, frames: str, per_split: dict[str, list[str]],
                    classes: list[str], klass: dict[str, str], paths: dict[str, Path], cache: FeatureCache,
                    embeddings: np.ndarray, source: str, max_len: int | None = None) -> Written:
    """Write the benchmark file from the feature cache, ``WRITE_VIDEOS`` videos at a time (the import's
    streaming :class:`BenchmarkWriter`): memory holds one such chunk whatever the number of videos.
    Per split, videos keep the order of ``per_split``; per-second sequences longer than ``max_len``
    are centre-cropped."""
    cid = {c: i for i, c in enumerate(classes)}
    temporal = frames == "per-second"
    cut = False  # whether the crop may have shortened a sequence (recorded in the file)
    with BenchmarkWriter(path) as w:
        for s in STORED_SPLITS:
            ids = per_split[s]
            for a in range(0, len(ids), WRITE_VIDEOS):
                chunk = ids[a : a + WRITE_VIDEOS]
                audio, video = [], []
                for v in chunk:
                    hit = cache.get(paths[v])
                    if hit is None:  # removed or damaged since it was extracted
                        raise DataError(f"feature cache {cache.dir}: the features of {paths[v]} are gone or "
                                        "unreadable; run the extraction again (it re-extracts that video)")
                    # the cache holds sequences cut at decoding: one of max_len steps may have been longer
                    cut = cut or temporal and max_len is not None and max(len(hit[0]), len(hit[1])) >= max_len
                    audio.append(crop(hit[0], max_len) if temporal else hit[0])
                    video.append(crop(hit[1], max_len) if temporal else hit[1])
                if not temporal:
                    audio, video = np.stack(audio), np.stack(video)
                w.add(s, audio, video, np.array([cid[klass[v]] for v in chunk], dtype=np.int64), chunk)
        return w.finish(name=name, dataset=name, features="temporal-clipclap" if temporal else "clipclap",
                        class_names=classes, embeddings=embeddings, source=source,
                        extra={"settings_from": settings_from,
                               **({"max_len": crop_record(max_len if cut else None)} if temporal else {})})


# -- everything ------------------------------------------------------------------------
@dataclass
class ExtractOptions:
    videos: str
    name: str | None = None
    split_from: str | None = None
    metadata: str | None = None
    split: str = "main"
    video_split: str | None = None
    settings_from: str | None = None
    seed: int = 0
    frames: str = "middle"
    max_len: int | None = None
    clip: str | None = None
    clap: str | None = None
    templates: str | None = None
    device: str = "auto"
    batch_size: int = 32
    workers: int = 2
    cache: str | None = None
    home: str | None = None


def check_options(o: ExtractOptions) -> ExtractOptions:
    """Validate the choices before anything is read; fill the defaults that depend on others."""
    from avbench.data.registry import check_extracted_name

    if o.frames not in FRAME_MODES:
        raise DataError(f"--frames {o.frames}: expected one of {', '.join(FRAME_MODES)}")
    for flag, value in (("--split-from", o.split_from), ("--settings-from", o.settings_from)):
        if value is not None and value not in DATASETS_WITH_SPLITS:
            raise DataError(f"{flag} {value}: expected one of {', '.join(DATASETS_WITH_SPLITS)}")
    if o.split_from:
        if not o.metadata:
            raise DataError(f"--split-from {o.split_from} needs --metadata DIR (the AVCA-GZSL class-split metadata, "
                            "e.g. ../shared/data/avgzsl-metadata)")
        o.settings_from = o.settings_from or o.split_from
    elif o.video_split:
        raise DataError(f"--video-split {o.video_split} applies to --split-from (own classes are split by seed)")
    elif not o.settings_from:
        raise DataError("own classes (no --split-from): pass --settings-from ucf|activitynet|vggsound, the published "
                        "benchmark whose method settings and split proportions this benchmark uses")
    if o.name is None:
        o.name = f"{o.split_from}-extracted" if o.split_from else Path(o.videos).expanduser().resolve().stem
    o.name = check_extracted_name(o.name)
    if o.batch_size < 1 or o.workers < 1:
        raise DataError(f"--batch-size {o.batch_size} / --workers {o.workers}: expected positive numbers")
    o.max_len = crop_length(o.max_len, DEFAULT_MAX_LEN.get(o.settings_from) if o.frames == "per-second" else None)
    return o


def extract(o: ExtractOptions, on_start: Callable[[int], None] | None = None,
            on_video: Callable[[str], None] | None = None, on_status: Callable[[str], None] | None = None):
    """Run the whole extraction; returns (saved path, benchmark, report dict). The report is also saved."""
    from avbench.data.encoders import DEFAULT_CLAP, DEFAULT_CLIP, DEFAULT_TEMPLATES, Encoders
    from avbench.data.registry import avbench_home, dataset_path

    o = check_options(o)
    status = on_status or (lambda s: None)
    videos, ignored = find_videos(o.videos)
    if o.split_from:
        plan = from_metadata(videos, o.split_from, Path(o.metadata), o.split, o.video_split, o.seed)
        todo = [v for v in videos if v.video_id in plan.assign]
    else:
        todo = videos
        plan = None
    status("loading CLIP and CLAP")
    enc = Encoders(o.clip or DEFAULT_CLIP, o.clap or DEFAULT_CLAP, o.device)
    home = avbench_home(o.home)
    cache_root = Path(o.cache).expanduser() if o.cache else home / "cache" / "extract"
    cache = FeatureCache(cache_root, enc.identity(), o.frames, o.max_len)
    if on_start:
        on_start(len(todo))
    ok, stats = extract_features(todo, enc, cache, frames=o.frames, batch_size=o.batch_size, workers=o.workers,
                                 max_len=o.max_len, on_video=on_video)
    rdir = home / "extract" / o.name
    try:
        if plan is None:  # own classes: split the videos that could be used
            plan = seeded([v for v in videos if v.video_id in ok], o.settings_from, o.seed)
        per_split, classes, dropped = finalise(plan, ok)
    except DataError as e:  # nothing to build: keep the list of failed videos for the user
        if not stats.failed:
            raise
        where = _write_report(rdir, {"name": o.name, "error": str(e), "failed": stats.failed})
        raise DataError(f"{e}; {len(stats.failed)} of {len(todo)} videos failed (listed in {where})") from None
    status("class embeddings")
    templates = o.templates or DEFAULT_TEMPLATES[o.settings_from]
    t = time.perf_counter()
    emb = enc.class_embeddings([plan.prompt_names[c] for c in classes], templates)
    text_seconds = time.perf_counter() - t
    source = (f"avbench data extract from {Path(o.videos).expanduser().resolve()}: {plan.source}; settings of "
              f"{o.settings_from}; CLIP {enc.names['clip']}, CLAP {enc.names['clap']}, frames {o.frames}, "
              f"templates {templates}")
    status("saving")
    path = write_benchmark(dataset_path(o.name, o.home), name=o.name, settings_from=o.settings_from, frames=o.frames,
                           per_split=per_split, classes=classes, klass=plan.klass,
                           paths={v.video_id: v.path for v in todo}, cache=cache, embeddings=emb, source=source,
                           max_len=o.max_len).path
    bench = Benchmark.open(path)
    report = {
        "name": o.name, "path": str(path), "dataset": bench.dataset, "features": bench.features,
        "fingerprint": bench.fingerprint, "split": plan.source, "device": enc.device, "models": enc.names,
        "videos_found": len(videos), "files_ignored": ignored, "videos_used": len(todo),
        "extracted": stats.extracted, "cached": stats.cached, "failed": stats.failed,
        "unmatched_classes": plan.unmatched, "classes_not_in_split": plan.outside,
        "classes_without_videos": plan.missing,
        "videos_not_in_tables": plan.not_in_tables, "table_conflicts": plan.conflicts, "dropped_classes": dropped,
        "splits": {s: {"classes": len({plan.klass[v] for v in per_split[s]}), "videos": len(per_split[s])}
                   for s in STORED_SPLITS},
        "seconds": {"wall": round(stats.wall_seconds, 3), "decode": round(stats.decode_seconds, 3),
                    "encode": round(stats.encode_seconds, 3), "text": round(text_seconds, 3),
                    "load_models": round(enc.load_seconds, 3)},
        "videos_per_second": round(stats.extracted / stats.wall_seconds, 3) if stats.extracted else None,
        "decode_share": round(stats.decode_seconds / (stats.decode_seconds + stats.encode_seconds), 3)
        if stats.extracted else None,
        "options": {k: v for k, v in asdict(o).items() if k not in ("home",)},
        "usable": len(ok),
    }
    report["report"] = str(_write_report(rdir, report))
    return path, bench, report


def _write_report(folder: Path, report: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report", suffix=".json", dir=folder)
    with os.fdopen(fd, "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    os.replace(tmp, folder / "report.json")
    return folder / "report.json"
