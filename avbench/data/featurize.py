"""Features of videos for ``avbench data extract``: decoding ahead of the encoders, and a per-video cache.

Videos are decoded (:mod:`avbench.data.media`, PyAV) in ``workers`` threads ahead of
the encoders (:mod:`avbench.data.encoders`), which run in batches; each video's
features are written to the cache as one ``.npz`` (temporary name, then rename), keyed
by the video (path, size, mtime), the models and the frame mode, so a rerun after an
interruption skips every video already done. A video that cannot be decoded, or has no
audio track, is recorded as failed and left out. Decoded clips wait for the encoders in
bounded memory (about ``READ_AHEAD_BYTES``): fewer decodes run ahead, and batches are
smaller, when clips are large (a frame per second of long, high-resolution videos).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from avbench.data.media import MediaError, read_clip
from avbench.data.splits import Video

CACHE_VERSION = 1
# decoded frames and audio held ahead of the encoders, about: a batch is encoded once its clips hold
# half of it, and fewer decodes run ahead when clips are large (one frame per second of a long video)
READ_AHEAD_BYTES = 1 << 30


class FeatureCache:
    """One ``.npz`` per video under ``root/<models and frame mode>/``, written atomically."""

    def __init__(self, root: Path, identity: dict, frames: str, max_len: int | None = None):
        # per-second features are stored centre-cropped to max_len steps: part of the key (None: uncropped)
        crop = {"max_len": int(max_len)} if frames == "per-second" and max_len is not None else {}
        key = json.dumps({"v": CACHE_VERSION, "frames": frames, **crop, **identity}, sort_keys=True)
        self.dir = Path(root) / hashlib.sha256(key.encode()).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "about.json").write_text(key + "\n")

    def _path(self, path: Path) -> Path:
        st = path.stat()
        h = hashlib.sha1(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
        return self.dir / h[:2] / f"{h}.npz"

    def get(self, path: Path):
        try:
            f = self._path(path)
            if not f.is_file():
                return None
            with np.load(f) as z:
                return z["audio"], z["video"]
        except (OSError, ValueError, KeyError):  # unreadable cache entry: extract again
            return None

    def put(self, path: Path, audio: np.ndarray, video: np.ndarray) -> None:
        f = self._path(path)
        f.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp", suffix=".npz", dir=f.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, audio=audio, video=video)
            os.replace(tmp, f)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


@dataclass
class Stats:
    total: int = 0
    cached: int = 0
    extracted: int = 0
    failed: list = field(default_factory=list)  # [{"path", "reason"}]
    decode_seconds: float = 0.0  # summed over videos (in parallel with encoding when workers > 0)
    encode_seconds: float = 0.0
    wall_seconds: float = 0.0


def _decode(video: Video, rate: int, window_s: float, frames: str, max_steps: int | None = None):
    try:
        return read_clip(video.path, rate=rate, window_s=window_s, frames=frames, max_steps=max_steps)
    except MediaError as e:
        return str(e)
    except Exception as e:  # a decoder failure of any kind: report the video, go on
        return f"unreadable: {type(e).__name__}: {str(e)[:160]}"


def extract_features(videos: list[Video], encoders, cache: FeatureCache, *, frames: str = "middle",
                     batch_size: int = 32, workers: int = 2, max_len: int | None = None,
                     on_video: Callable[[str], None] | None = None) -> tuple[set, Stats]:
    """The ids of the videos whose features ([D] each, or [T, D] per second) are now in ``cache``, and
    the run's statistics. Features are not kept in memory: the benchmark is written from the cache.

    ``max_len``: per-second sequences keep their centre ``max_len`` steps, cut at decoding (only
    those frames are kept; ``cache`` must have been made with the same ``max_len``).
    ``on_video(status)`` is called once per video (``cached``, ``extracted`` or ``failed``).
    """
    t0 = time.perf_counter()
    stats = Stats(total=len(videos))
    out: set[str] = set()
    todo = []
    for v in videos:
        if cache.get(v.path) is None:  # missing or unreadable: extract (again)
            todo.append(v)
            continue
        out.add(v.video_id)
        stats.cached += 1
        if on_video:
            on_video("cached")

    def fail(v: Video, reason: str) -> None:
        stats.failed.append({"path": str(v.path), "class": v.label, "reason": reason})
        if on_video:
            on_video("failed")

    def encode(batch: list) -> None:
        if not batch:
            return
        t = time.perf_counter()
        try:
            feats = _encode(encoders, [c for _, c in batch], batch_size, temporal)
        except Exception:  # isolate the clip the encoders cannot take
            feats = []
            for v, c in batch:
                try:
                    feats.append(_encode(encoders, [c], batch_size, temporal)[0])
                except Exception as e:
                    feats.append(f"encoder failed: {type(e).__name__}: {str(e)[:160]}")
        stats.encode_seconds += time.perf_counter() - t
        for (v, _), f in zip(batch, feats):
            if isinstance(f, str):
                fail(v, f)
                continue
            cache.put(v.path, *f)
            out.add(v.video_id)
            stats.extracted += 1
            if on_video:
                on_video("extracted")

    rate, window = encoders.rate, encoders.window_s
    temporal = frames == "per-second"
    batch: list = []
    held = 0  # bytes of the decoded clips in ``batch``
    sizes = [0, 0]  # clips decoded, their bytes: the mean clip size sets how many decodes run ahead
    ahead = max(2 * batch_size, 2 * workers)

    def room() -> int:
        """Decodes that may be in flight: ``ahead`` clips, fewer when they are large (per-second
        frames of long videos), so decoded clips held ahead stay under ``READ_AHEAD_BYTES``."""
        if not sizes[0]:
            return max(1, workers)  # no clip's size known yet
        fits = int((READ_AHEAD_BYTES - held) // max(1, sizes[1] / sizes[0]))
        return max(1, workers, min(ahead, fits))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque = deque()
        it = iter(todo)

        def fill() -> None:
            while len(pending) < room():
                nxt = next(it, None)
                if nxt is None:
                    return
                pending.append((nxt, pool.submit(_decode, nxt, rate, window, frames, max_len)))

        try:
            fill()
            while pending:
                v, fut = pending.popleft()
                clip = fut.result()
                if isinstance(clip, str):
                    fail(v, clip)
                    fill()
                    continue
                stats.decode_seconds += clip.decode_seconds
                size = sum(f.nbytes for f in clip.frames) + sum(a.nbytes for a in clip.audio)
                sizes[0], sizes[1] = sizes[0] + 1, sizes[1] + size
                batch.append((v, clip))
                held += size
                if len(batch) >= batch_size or held >= READ_AHEAD_BYTES // 2:
                    encode(batch)
                    batch, held = [], 0
                fill()
            encode(batch)
        except BaseException:  # interrupted: drop the decodes not started; what was encoded is in the cache
            for _, fut in pending:
                fut.cancel()
            raise
    stats.wall_seconds = time.perf_counter() - t0
    return out, stats


def _encode(encoders, clips: list, batch_size: int, temporal: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """(audio, video) per clip: [D] for the middle frame, [T, D] for one frame per second."""
    frames = [f for c in clips for f in c.frames]
    audio = [a for c in clips for a in c.audio]
    chunk = max(1, batch_size)
    v = np.concatenate([encoders.images(frames[i : i + chunk]) for i in range(0, len(frames), chunk)])
    a = np.concatenate([encoders.audios(audio[i : i + chunk]) for i in range(0, len(audio), chunk)])
    out, i, j = [], 0, 0
    for c in clips:
        nv, na = len(c.frames), len(c.audio)
        fv, fa = v[i : i + nv], a[j : j + na]
        i, j = i + nv, j + na
        out.append((fa, fv) if temporal else (fa[0], fv[0]))
    return out
