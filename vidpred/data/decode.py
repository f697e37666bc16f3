"""PyAV decoding: one video → upright uint8 frames at the training fps and size.

Frames are turned upright by the video's display matrix (phones store portrait or upside-down recordings as
landscape pixels plus a rotation flag; front cameras and some editors also mirror): its quarter turn and its
mirror, read as FFmpeg's own players read it. They are resampled by presentation timestamp
(sample-and-hold: each target time takes the latest frame shown at or before it), so 29.97 fps and variable
frame rate come out evenly spaced. Each kept frame is scaled keeping its aspect ratio until it covers the
target, turned, then centre-cropped. Output stays uint8 (H, W, 3) RGB; the model converts.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np
from av.sidedata.sidedata import SideDataContainer

# PyAV reads a file-like object in calls of this size: from S3 each call is one ranged GET, so a large
# buffer means few requests (a 30 MB BDD100K video: 15 GETs instead of ~900 with PyAV's 32 KiB default).
READ_BUFFER = 2 << 20


class EndTolerantReader:
    """A file-like view that may be positioned past the end, as local files may: a truncated MP4's index
    points there, and pyarrow's S3 file refuses such a seek ("Cannot seek past end of file") where PyAV
    wants to read nothing and report the damage itself."""

    def __init__(self, f: BinaryIO):
        self.f, self.pos = f, f.tell()
        self.size = f.seek(0, 2)
        f.seek(self.pos)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = max(0, offset + (0, self.pos, self.size)[whence])
        if self.pos <= self.size:
            self.f.seek(self.pos)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if self.pos >= self.size:
            return b""
        data = self.f.read(n)
        self.pos += len(data)
        return data


def open_container(source: str | BinaryIO, buffer_size: int = READ_BUFFER) -> av.container.InputContainer:
    if not isinstance(source, str):
        source = EndTolerantReader(source)
    return av.open(source, mode="r", buffer_size=buffer_size)


@dataclass(frozen=True)
class Orientation:
    """How a stored frame is shown: swap rows and columns (``transpose``), then mirror the columns and/or the
    rows. Read from the display matrix [a b u; c d v; x y w], which maps a stored pixel (p, q) to the shown
    (a·p + c·q, b·p + d·q) (libavutil/display.h); an angle that is not a quarter turn rounds to the nearest."""
    transpose: bool = False
    flip_cols: bool = False
    flip_rows: bool = False

    @classmethod
    def of(cls, frame: av.VideoFrame) -> "Orientation":
        """Read once per video (the first frame's). Through a ``SideDataContainer`` of its own, not
        ``frame.side_data``: in PyAV 18 that property caches the container on the frame, and the container
        points back at the frame, so every frame it was read from lived until the cycle collector ran. Per frame
        that held hundreds of decoded 720p frames per decoding process; in the survey's probe threads,
        whose collections promote each other's live frames past the young generations, a frame per probed
        video (gigabytes in the driver at BDD100K's size) until a full collection, which the survey's
        million tracked objects make rare. A container of its own points at the frame, the frame not at it:
        both go as soon as they are dropped."""
        matrix = next((bytes(sd) for sd in SideDataContainer(frame) if sd.type.name == "DISPLAYMATRIX"), None)
        if matrix is None:
            return cls()
        a, b, _, c, d, *_ = struct.unpack("<9i", matrix)
        if abs(b) + abs(c) > abs(a) + abs(d):  # a quarter turn either way: rows and columns swap
            return cls(True, c < 0, b < 0)
        return cls(False, a < 0, d < 0)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels`` (rows, columns, ...) as shown."""
        out = pixels.swapaxes(0, 1) if self.transpose else pixels
        if self.flip_cols:
            out = out[:, ::-1]
        return out[::-1] if self.flip_rows else out

    def rotation(self) -> tuple[int, bool]:
        """(counter-clockwise degrees, mirrored): shown = rotate(mirror left-right if mirrored(stored))."""
        probe = np.arange(6).reshape(2, 3)
        shown = self.apply(probe)
        for mirrored in (False, True):
            for turns in range(4):
                if np.array_equal(np.rot90(probe[:, ::-1] if mirrored else probe, turns), shown):
                    return turns * 90, mirrored
        raise AssertionError(f"{self} is not one of the 8 symmetries of a rectangle")


def _cover_size(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int]:
    scale = max(width / src_w, height / src_h)
    return max(width, round(src_w * scale)), max(height, round(src_h * scale))


def to_array(frame: av.VideoFrame, width: int, height: int, shown: Orientation) -> np.ndarray:
    """Turned as ``shown`` says, aspect-preserving cover resize, centre crop: uint8 (height, width, 3)."""
    sideways = shown.transpose
    shown_w, shown_h = (frame.height, frame.width) if sideways else (frame.width, frame.height)
    cover_w, cover_h = _cover_size(shown_w, shown_h, width, height)
    scaled_w, scaled_h = (cover_h, cover_w) if sideways else (cover_w, cover_h)  # resize first: turn few pixels
    rgb = frame.reformat(width=scaled_w, height=scaled_h, format="rgb24").to_ndarray()
    rgb = shown.apply(rgb)
    top, left = (cover_h - height) // 2, (cover_w - width) // 2
    return np.ascontiguousarray(rgb[top:top + height, left:left + width])


def decode_frames(source: str | BinaryIO, fps: float, height: int, width: int) -> Iterator[np.ndarray]:
    """Yield uint8 (height, width, 3) frames at ``fps`` from a path or file-like object, turned upright by
    the first frame's display matrix (a rotation that changes mid-stream is not followed)."""
    step = 1.0 / fps
    with open_container(source) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        start = None
        t = next_t = 0.0
        emitted = 0
        held = None  # latest decoded frame whose time is <= next_t
        shown = Orientation()
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            t = float(frame.time)
            if start is None:
                start, shown = t, Orientation.of(frame)
            t -= start
            while held is not None and next_t < t - 1e-6:
                yield to_array(held, width, height, shown)
                emitted += 1
                next_t = emitted * step
            held = frame
        if held is None:
            raise ValueError("no decodable video frames")
        if next_t <= t + 1e-6:  # a target time falls exactly on the last frame
            yield to_array(held, width, height, shown)
