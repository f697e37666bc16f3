"""Procedural synthetic dashcam clips: a BDD100K-layout tree of H.264 ``.mov`` files, no download needed.

Each clip is a drive seen through a windscreen camera: a sky panorama (gradient, clouds, hills or a city
skyline) that pans as the road turns, a perspective road (2-4 lanes, dashed lane lines, solid edge lines,
shoulders, grass or pavement stripes) whose markings stream toward the camera, roadside objects (reflector
posts, trees, lamp posts, signs, buildings as boxes) that grow and slide outward as they approach, vehicles
ahead in lanes that close in and pull away at their own speed (brake lights when they slow), and on
two-lane roads oncoming traffic. Ego speed, road curvature, lateral drift and camera pitch are smooth
random processes, so predicting the next frame needs motion, not a copy. Lighting (day / overcast / dusk),
haze, lane count, scenery kind, camera height and focal length vary per clip.

Everything is drawn from ``numpy`` Generators spawned from ``seed`` (one stream per part of the scene, so
the size or length of a clip does not reshuffle the rest): the same seed gives the same frames, and, with
the single-threaded encoder and x264's mbtree off (with it on, this libx264 build is not bit-reproducible),
the same bytes. Rendering is vectorised: the ground is built per row (perspective depth, lane-line
breakpoints, per-row colours with dash coverage anti-aliased along the road, haze) and expanded to pixels
by one ``np.repeat`` of 3-byte colours; building facades are column runs expanded the same way; posts,
trees, signs and vehicles are a few slice fills each, drawn far to near.

This module holds the public API and the file writing. The scene is in ``scene`` (every random choice of a
clip, and the frame composed from the parts); ``motion`` has the camera, ego speed and road curve; the parts
are ``sky``, ``road`` (the ground), ``buildings``, ``roadside`` (posts, trees, lamps, signs) and
``vehicles`` (traffic and the ego car's hood); ``paint`` the low-level fills.

Speed: faster than real time at 1280x720 @ 30 fps on one core, the encoder most of it
(``python benchmarks/synth_speed.py``; figures in ``benchmarks/results/synth_speed.json``). ``PRESET`` trades
file size for that margin.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from .scene import _Scene

__all__ = ["check_arguments", "parse_size", "render_frames", "render_clip", "synth_dataset"]

PRESET = "superfast"   # veryfast: smaller files, but barely real time at 720p on one busy core
CRF = 23
_SIZE_RE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")


# --------------------------------------------------------------------------------------------- arguments

def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` → ``(1280, 720)``."""
    m = _SIZE_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise ValueError("size must be WIDTHxHEIGHT, e.g. 1280x720")
    return int(m.group(1)), int(m.group(2))


def _check_size(size: tuple[int, int] | str) -> tuple[int, int]:
    if isinstance(size, str):
        size = parse_size(size)
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if w < 16 or h < 16:
        raise ValueError(f"size must be at least 16x16, got {w}x{h}")
    if w % 2 or h % 2:
        raise ValueError(f"size must have an even width and height (H.264 yuv420p), got {w}x{h}")
    return w, h


def _check_fps(fps: int) -> int:
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps < 1:
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    return int(fps)


def _n_frames(seconds: float, fps: int) -> int:
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    return max(1, round(seconds * fps))


# --------------------------------------------------------------------------------------------- public API

def render_frames(n_frames: int, fps: int, size: tuple[int, int], seed: int) -> Iterator[np.ndarray]:
    """Yield ``n_frames`` uint8 (H, W, 3) RGB frames of one synthetic drive; deterministic in ``seed``."""
    W, H = _check_size(size)
    fps = _check_fps(fps)
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    scene = _Scene(int(seed), int(n_frames), fps, W, H)     # arguments are checked here, not at first next()
    return (scene.frame(i) for i in range(int(n_frames)))


def _open_encoder(path: Path, fps: int, W: int, H: int):
    import av

    container = av.open(str(path), "w", format="mov", options={"movflags": "+faststart"})
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    stream.time_base = Fraction(1, fps)
    stream.codec_context.thread_count = 1
    # mbtree off: with it (and B-frames) this libx264 build gives slightly different bits from run to run
    stream.options = {"preset": PRESET, "crf": str(CRF), "threads": "1", "x264-params": "mbtree=0"}
    return container, stream


def render_clip(path: str | Path, seconds: float = 4.0, fps: int = 30, size: tuple[int, int] = (1280, 720),
                seed: int = 0) -> Path:
    """Render and encode one clip to ``path`` (H.264 in .mov, yuv420p), atomically: a temp file is
    written next to it and renamed, so ``path`` either is complete or does not exist."""
    import av

    W, H = _check_size(size)
    fps = _check_fps(fps)
    n = _n_frames(seconds, fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        container, stream = _open_encoder(tmp, fps, W, H)
        scene = _Scene(int(seed), n, fps, W, H)
        buf = np.empty((H, W, 3), np.uint8)          # reused: from_ndarray copies it
        with container:
            for k in range(n):
                rgb = scene.frame(k, buf)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", threads=1)
                frame.pts = k
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _is_complete(path: Path, n: int, fps: int, W: int, H: int) -> bool:
    """An existing file that decodes as the clip asked for (size, rate, frame count)."""
    import av

    try:
        with av.open(str(path)) as c:
            st = c.streams.video[0]
            return (st.codec_context.width, st.codec_context.height) == (W, H) \
                and st.average_rate == fps and st.frames == n
    except (av.FFmpegError, IndexError, OSError):
        return False


def _clip_ids(clips: int, val_fraction: float, seed: int) -> dict[str, list[str]]:
    """The clip ids of each split; train and val ids never collide, and growing ``clips`` only adds ids."""
    n_val = max(1, round(clips * val_fraction))
    return {"train": [f"synth-{seed:04d}-t{i:05d}" for i in range(clips)],
            "val": [f"synth-{seed:04d}-v{i:05d}" for i in range(n_val)]}


def _clip_seed(seed: int, split: str, i: int) -> int:
    state = np.random.SeedSequence([seed, {"train": 0, "val": 1}[split], i]).generate_state(1, np.uint64)
    return int(state[0])


def check_arguments(clips: int, seconds: float, fps: int, size: tuple[int, int] | str, seed: int,
                    val_fraction: float = 0.25) -> tuple[int, int, int, int]:
    """(width, height, fps, frames per clip) of a synthetic set, or ValueError whose message starts with the
    argument's name (``clips must be ...``), before anything is rendered or written."""
    W, H = _check_size(size)
    fps = _check_fps(fps)
    n = _n_frames(seconds, fps)
    if isinstance(clips, bool) or not isinstance(clips, (int, np.integer)) or clips < 1:
        raise ValueError(f"clips must be a positive integer, got {clips!r}")
    if not (0 <= val_fraction <= 1):
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return W, H, fps, n


def synth_dataset(out: str | Path, clips: int = 8, seconds: float = 4.0, fps: int = 30,
                  size: tuple[int, int] = (1280, 720), seed: int = 0, val_fraction: float = 0.25,
                  progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write a BDD100K-layout tree OUT/videos/train/<id>.mov and OUT/videos/val/<id>.mov (H.264 via PyAV, yuv420p).

    ``clips`` train clips; val gets ``max(1, round(clips * val_fraction))`` extra clips. Returns the paths of
    the whole set (train then val), whether written now or reused: a clip whose file already exists with
    the asked size, frame rate and frame count is skipped, any other file at its name is replaced.
    Clip ``i`` of a split depends only on (``seed``, split, ``i``), so reruns give the same tree.
    """
    W, H, fps, n = check_arguments(clips, seconds, fps, size, seed, val_fraction)
    out = Path(out)
    ids = _clip_ids(int(clips), val_fraction, int(seed))
    total = sum(len(v) for v in ids.values())
    paths: list[Path] = []
    done = 0
    for split, names in ids.items():
        for i, name in enumerate(names):
            path = out / "videos" / split / f"{name}.mov"
            done += 1
            if path.exists() and _is_complete(path, n, fps, W, H):
                if progress:
                    progress(f"[{done}/{total}] {split}/{path.name}: exists, skipped")
            else:
                render_clip(path, seconds, fps, (W, H), _clip_seed(int(seed), split, i))
                if progress:
                    progress(f"[{done}/{total}] {split}/{path.name}: wrote {n} frames {W}x{H} @ {fps} fps")
            paths.append(path)
    return paths
