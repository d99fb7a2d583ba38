"""Reading videos with PyAV: the frames and the audio window a feature extractor needs.

Only what is needed is decoded. For the middle frame (the ClipClap recipe) the
container is seeked to the keyframe before the middle and decoded from there up
to the middle; the audio is decoded from a seek to the start of its window (the
centred ``window_s`` seconds) to its end, and converted to mono float32 at the
encoder's rate by ``av.AudioResampler`` (libswresample). One frame per second
(``frames="per-second"``, for temporal methods) decodes the video once, front to
back, keeping the first frame at or after the middle of each second (a trailing
part under half a second is no step); with ``max_steps`` only the centre seconds a
crop to that length keeps have their frame kept, so a long video's frames stay few.

A file that cannot be read is a :class:`MediaError` whose message is the reason
(``unreadable: ...``, ``no audio track``, ...): the extractor lists it in its
report and goes on.

:func:`write_video` writes short test videos (a coloured pattern and a tone), for
tests and benchmarks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avbench.data.ragged import centre_window

FRAME_MODES = ("middle", "per-second")


class MediaError(Exception):
    """A video that cannot be used; the message says why (one short phrase)."""


@dataclass
class Clip:
    """What the encoders need from one video."""

    frames: list  # RGB uint8 [H, W, 3]: one (middle) or one per second
    audio: list  # mono float32 at ``rate``: one window (middle) or one per second
    rate: int
    duration: float  # seconds
    decode_seconds: float = 0.0


def _open(path: Path):
    import av

    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        raise MediaError(f"unreadable: {_reason(e)}") from None


def _reason(e: Exception) -> str:
    strerror = getattr(e, "strerror", None)  # FFmpeg's message without the errno and file name
    text = strerror or (str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    return text[:200]


def _duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def _start(stream) -> float:
    if stream.start_time is not None and stream.time_base is not None:
        return float(stream.start_time * stream.time_base)
    return 0.0


def _seek(container, stream, t: float) -> bool:
    """Seek ``stream`` to the keyframe at or before time ``t``; False when the file does not allow it."""
    import av

    if t <= _start(stream) + 1e-6 or stream.time_base is None:
        return False
    try:
        container.seek(int(t / stream.time_base), stream=stream, backward=True, any_frame=False)
        return True
    except (av.error.FFmpegError, OverflowError, ValueError):
        return False


def _video_frames(container, vs, targets: list[float]) -> list[np.ndarray]:
    """The first decoded frame at or after each target time (the last frame where a target is past the end)."""
    out: list[np.ndarray] = []
    last = None
    k = 0
    for frame in container.decode(vs):
        t = frame.time if frame.time is not None else 0.0
        last = frame
        while k < len(targets) and t >= targets[k] - 1e-6:
            out.append(frame.to_ndarray(format="rgb24"))
            k += 1
        if k == len(targets):
            break
    if last is None:
        return out
    while len(out) < len(targets):  # targets past the last frame (a duration that overstates the stream)
        out.append(last.to_ndarray(format="rgb24"))
    return out


def _audio(container, stream, t0: float, t1: float | None, rate: int) -> tuple[np.ndarray, float]:
    """Mono float32 samples at ``rate`` from time ``t0`` to ``t1`` (None: to the end), and their start time."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks: list[np.ndarray] = []
    first = None
    for frame in container.decode(stream):
        ft = frame.time if frame.time is not None else 0.0
        dur = frame.samples / float(frame.sample_rate or rate)
        if ft + dur <= t0:
            continue
        if t1 is not None and ft >= t1:
            break
        if first is None:
            first = ft
        frame.pts = None  # the resampler keeps its own timing; we cut by sample count below
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    if first is None or not chunks:
        return np.zeros(0, np.float32), t0
    x = np.concatenate(chunks).astype(np.float32, copy=False)
    a = max(0, int(round((t0 - first) * rate)))
    b = len(x) if t1 is None else max(a, int(round((t1 - first) * rate)))
    return x[a:b], max(first, t0)


def read_clip(path: str | Path, *, rate: int, window_s: float | None, frames: str = "middle",
              max_steps: int | None = None) -> Clip:
    """Decode the frames and audio of one video (see the module docstring).

    ``rate``: audio sample rate of the audio encoder. ``window_s``: the audio
    window (centred, in seconds) with ``frames="middle"``; None keeps the whole
    track. With ``frames="per-second"`` there is one frame and one 1-s audio
    window per second of video; ``max_steps``: only the centre ``max_steps`` seconds
    (those :func:`avbench.data.layout.crop` keeps of a longer sequence) have their
    frame converted and kept, so a long video holds a bounded number of frames.
    """
    import av

    if frames not in FRAME_MODES:
        raise ValueError(f"frames={frames!r}: expected one of {', '.join(FRAME_MODES)}")
    t_start = time.perf_counter()
    container = _open(Path(path))
    try:
        if not container.streams.video:
            raise MediaError("no video track")
        if not container.streams.audio:
            raise MediaError("no audio track")
        vs = container.streams.video[0]
        aus = container.streams.audio[0]
        vs.thread_type = "AUTO"
        start = _start(vs)
        duration = _duration(container, vs)
        try:
            if frames == "middle":
                n = int(vs.frames or 0)
                rate_v = float(vs.average_rate) if vs.average_rate else 0.0
                if n > 0 and rate_v > 0:  # the frame at index n // 2, as the reference's frame count // 2
                    mid = start + (n // 2) / rate_v
                else:
                    mid = start + duration / 2
                imgs = _video_frames(container, vs, [mid]) if _seek(container, vs, mid) else []
                if not imgs:  # no seek, or one that landed past the frames: from the start
                    container.seek(0)
                    imgs = _video_frames(container, vs, [mid])
                a_mid = _start(aus) + (_duration(container, aus) or duration) / 2
                if window_s is None or (_duration(container, aus) or duration) <= window_s:
                    t0, t1 = _start(aus), None
                else:
                    t0, t1 = a_mid - window_s / 2, a_mid + window_s / 2
                if not _seek(container, aus, t0):
                    container.seek(0)
                samples, _ = _audio(container, aus, t0, t1, rate)
                if window_s is not None:
                    samples = samples[: int(round(window_s * rate))]
                audio = [samples]
            else:
                steps = max(1, math.floor(duration + 0.5))  # a trailing part under half a second is no step
                targets = [start + min(k + 0.5, max(duration - 1e-3, 0.0)) for k in range(steps)]
                lo, hi = centre_window(steps, max_steps)  # the steps kept if the audio covers them all
                imgs = _video_frames(container, vs, targets[lo:hi])
                container.seek(0)
                samples, _ = _audio(container, aus, _start(aus), None, rate)
                audio = [samples[k * rate : (k + 1) * rate] for k in range(steps)]
                audio = [x for x in audio if len(x)] or [samples]
                # an audio track shorter than the video: the pairs both have (then the centre of those)
                n = min(steps, len(audio)) if imgs else 0
                lo2, hi2 = centre_window(n, max_steps)
                if lo <= lo2 and hi2 <= hi:  # within the frames decoded (always when the audio covers the video)
                    imgs = imgs[lo2 - lo : hi2 - lo]
                else:  # a short audio track moved the centre: decode that window's frames
                    container.seek(0)
                    imgs = _video_frames(container, vs, targets[lo2:hi2])
                audio = audio[lo2:hi2][: len(imgs)]
        except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as e:
            raise MediaError(f"unreadable: {_reason(e)}") from None
        if not imgs:
            raise MediaError("no decodable video frames")
        if not audio or not len(audio[0]):
            raise MediaError("no audio samples")
        return Clip(frames=imgs, audio=audio, rate=rate, duration=duration,
                    decode_seconds=time.perf_counter() - t_start)
    finally:
        container.close()


# ---------------------------------------------------------------------------
def write_video(
    path: str | Path,
    *,
    seconds: float = 1.0,
    fps: int = 8,
    size: tuple[int, int] = (32, 24),
    color: tuple[int, int, int] = (200, 40, 40),
    tone_hz: float | None = 440.0,
    audio_rate: int = 16000,
    audio_seconds: float | None = None,
) -> Path:
    """A short test video: a moving bar over a solid colour and (unless ``tone_hz`` is None) a sine tone.

    MPEG-4 video with AAC audio in an .mp4, or whatever the suffix's container takes
    (.avi: MPEG-4 part 2 and MP3, as UCF101). ``audio_seconds``: the tone's length (default: the video's).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        as_ = None
        if tone_hz is not None:
            as_ = out.add_stream("libmp3lame" if path.suffix == ".avi" else "aac", rate=audio_rate)
            as_.layout = "mono"
        n = max(1, int(round(seconds * fps)))
        for i in range(n):
            img = np.empty((h, w, 3), np.uint8)
            img[:] = color
            x = (i * 3) % w
            img[:, x : x + 3] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if as_ is not None:
            total = int(round((seconds if audio_seconds is None else audio_seconds) * audio_rate))
            t = np.arange(total) / audio_rate
            wave = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            step = 1024
            for k in range(0, total, step):
                chunk = wave[k : k + step][None, :]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                frame.sample_rate = audio_rate
                frame.pts = k
                for packet in as_.encode(frame):
                    out.mux(packet)
            for packet in as_.encode():
                out.mux(packet)
    return path
