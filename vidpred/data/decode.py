"""PyAV decoding: one video → uint8 frames at the training fps and size.

Frames are resampled by presentation timestamp (sample-and-hold: each target time takes the latest frame
shown at or before it), so 29.97 fps and variable frame rate come out evenly spaced. Each kept frame is
scaled keeping its aspect ratio until it covers the target, then centre-cropped. Output stays uint8
(H, W, 3) RGB; the model converts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import av
import numpy as np


def _cover_size(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int]:
    scale = max(width / src_w, height / src_h)
    return max(width, round(src_w * scale)), max(height, round(src_h * scale))


def _to_array(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    cover_w, cover_h = _cover_size(frame.width, frame.height, width, height)
    rgb = frame.reformat(width=cover_w, height=cover_h, format="rgb24").to_ndarray()
    top, left = (cover_h - height) // 2, (cover_w - width) // 2
    return np.ascontiguousarray(rgb[top:top + height, left:left + width])


def decode_frames(source: str | BinaryIO, fps: float, height: int, width: int) -> Iterator[np.ndarray]:
    """Yield uint8 (height, width, 3) frames at ``fps`` from a path or file-like object."""
    step = 1.0 / fps
    with av.open(source, mode="r") as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        start = None
        t = next_t = 0.0
        emitted = 0
        held = None  # latest decoded frame whose time is <= next_t
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            t = float(frame.time)
            if start is None:
                start = t
            t -= start
            while held is not None and next_t < t - 1e-6:
                yield _to_array(held, width, height)
                emitted += 1
                next_t = emitted * step
            held = frame
        if held is None:
            raise ValueError("no decodable video frames")
        if next_t <= t + 1e-6:  # a target time falls exactly on the last frame
            yield _to_array(held, width, height)
