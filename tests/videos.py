"""Hand-made test videos: frames you can predict, at exactly the timestamps you choose."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def numbered_frame(i: int, height: int, width: int) -> np.ndarray:
    """A flat frame whose brightness encodes ``i`` (survives H.264 at high quality to within a few levels)."""
    return np.full((height, width, 3), (i * 4) % 256, dtype=np.uint8)


def encode(path: Path, times: list[float], height: int = 48, width: int = 64, container: str = "mov") -> Path:
    """H.264 video whose frame k (brightness 4k) is shown at ``times[k]`` seconds (variable rate allowed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 30000)
        stream.options = {"crf": "1", "preset": "ultrafast", "bf": "0"}
        for k, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(numbered_frame(k, height, width), format="rgb24")
            frame.pts, frame.time_base = round(t * 30000), stream.time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def brightness_index(frame: np.ndarray) -> int:
    return round(float(frame.mean()) / 4)
