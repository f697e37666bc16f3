"""One file's health check, cheap enough to run on every file before training.

``probe_video`` reads a video's header, decodes its first frame and demuxes its last second (with ranged
reads from S3: a few requests, never the whole object). It returns the facts training and ``data inspect``
need (:class:`VideoInfo`) or why the file is unusable (:class:`Skip`): empty, not a video (random bytes,
JSON, a JPEG), audio only, a codec no decoder here knows, truncated (a MOV/MP4 shorter than its own boxes
say, which is what decoding fails on; no index; data ending before the stated duration), or shorter than one
clip. ``data.probe = "header"`` reads the container header only (no
frame decode, no tail: cheaper, blind to truncation and rotation). ``probe_info`` checks a GPS/IMU
``info/<split>/*.json``. Damage a probe cannot see is still caught while decoding (``pipeline.ClipsFromVideo``).

A probe is split in two so that its result can be kept across runs (``vidpred.data.probe_index``):
``probe_facts`` learns what depends only on the file's bytes (:class:`Facts`, or a :class:`Skip` whose reason
is one of :data:`CONTENT_REASONS`), and ``judge`` turns facts into a verdict for one data config (the clip
count, and ``shorter than one clip``, depend on fps, context, future and stride). ``probe_video`` is both.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum

import av

from vidpred.config import DataConfig
from vidpred.data.decode import Orientation, open_container
from vidpred.data.sources import VideoFile, split_of
from vidpred.storage import open_input, read_bytes

TAIL_SECONDS = 1.0   # demux this much before the stated end to see that the data reaches it
END_SLACK = 0.5      # seconds the data may stop short of the stated duration
PROBE_BUFFER = 256 << 10  # a probe jumps (header, index, first frame, tail): small reads waste less
MOV_BOXES = (b"ftyp", b"wide", b"mdat", b"moov", b"free", b"skip")  # what a MOV/MP4 file starts with


class Reason(StrEnum):
    EMPTY = "empty file"
    NOT_VIDEO = "not a video"
    AUDIO_ONLY = "audio only"
    CODEC = "undecodable codec"
    TRUNCATED = "truncated"
    TOO_SHORT = "shorter than one clip"
    DECODE = "decode error"
    READ = "read error"
    NOT_FILE = "not a file"
    MISSING_SPLIT = "missing split folder"
    BAD_INFO = "malformed info JSON"


@dataclass(frozen=True)
class Skip:
    uri: str
    reason: Reason
    detail: str = ""

    @property
    def split(self) -> str:
        return split_of(self.uri)


@dataclass(frozen=True)
class VideoInfo:
    uri: str
    split: str
    size: int
    codec: str
    width: int          # as stored; ``rotation`` turns it upright
    height: int
    fps: float          # the stream's average frame rate
    duration: float     # seconds
    rotation: int       # counter-clockwise degrees from the display matrix: 0, 90, 180, 270
    clips: int          # estimated clips at the configured fps / clip length / stride
    mirrored: bool = False  # the display matrix also mirrors (left-right, before the rotation)

    def to_dict(self) -> dict:
        return dict(vars(self))   # plain values: a shallow copy, not dataclasses.asdict's deep one (100,000 a run)


@dataclass(frozen=True)
class Facts:
    """What a probe learns about a healthy video that does not depend on the data config: ``rate`` and
    ``duration`` unrounded, because the clip estimate is computed from them (``VideoInfo`` shows them rounded)."""

    codec: str
    width: int
    height: int
    rate: float         # average frame rate, 0 when the stream states none
    duration: float     # seconds
    rotation: int
    mirrored: bool


# Skip reasons ``probe_facts`` gives that depend only on the file's bytes: the same file gives the same one again.
# Not READ (a storage failure may pass) and not TOO_SHORT (it depends on the data config; ``judge`` decides it).
CONTENT_REASONS = frozenset({Reason.EMPTY, Reason.NOT_VIDEO, Reason.AUDIO_ONLY, Reason.CODEC, Reason.TRUNCATED,
                             Reason.DECODE, Reason.BAD_INFO})


def clip_count(frames: int, cfg: DataConfig) -> int:
    """Windows of ``cfg.clip_frames`` every ``cfg.stride`` frames in ``frames`` frames."""
    return 0 if frames < cfg.clip_frames else (frames - cfg.clip_frames) // cfg.stride + 1


def estimate_clips(duration: float, src_fps: float, cfg: DataConfig) -> tuple[int, int]:
    """(frames at ``cfg.fps``, clips) for a video of ``duration`` seconds, as ``decode_frames`` samples it."""
    last_frame_time = max(duration - 1.0 / src_fps, 0.0) if src_fps > 0 else duration
    frames = math.floor(last_frame_time * cfg.fps + 1e-6) + 1
    return frames, clip_count(frames, cfg)


def _message(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def mov_cut(f, size: int) -> tuple[str, int] | None:
    """(box type, the size the file should have) when a MOV/MP4 file is shorter than its own top-level boxes
    say (``mdat``, the media data, or ``moov``, the index, running past the end); None when every box fits,
    or the file is no MOV/MP4. Decoding fails on exactly these files (the demuxer hits the end before the
    last sample the index lists), however little is missing, so this is the probe's test for truncation:
    it reads 16 bytes per top-level box (3-5 boxes in a camera's file)."""
    pos, boxes = 0, 0
    while pos + 8 <= size and boxes < 64:
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8:
            return None
        box_size, kind = int.from_bytes(head[:4], "big"), head[4:8]
        if boxes == 0 and kind not in MOV_BOXES:
            return None  # not a MOV/MP4: other checks decide
        if box_size == 1 and len(head) == 16:
            box_size = int.from_bytes(head[8:16], "big")
        elif box_size == 0:  # "extends to the end of the file"
            return None
        if box_size < 8:
            return None  # not a box header: leave the verdict to the demuxer
        if pos + box_size > size:
            name = kind.decode("latin-1")
            return (name, pos + box_size) if kind in (b"mdat", b"moov") else None
        pos += box_size
        boxes += 1
    return None


def _intact_end(container: av.container.InputContainer, stream: av.video.VideoStream, at: float,
                limit: int | None = None) -> float:
    """Seconds (from the stream start) where the last whole packet demuxed from ``at`` on ends (at most
    ``limit`` packets); 0 when none is whole. A packet cut by the end of the file comes back flagged corrupt."""
    start = stream.start_time or 0
    container.seek(start + int(max(at, 0.0) / stream.time_base), stream=stream, backward=True,
                   any_frame=True)  # packets, not pictures: no need to go back to a keyframe
    end, seen = 0, 0
    for packet in container.demux(stream):
        if not packet.size or packet.pts is None:
            continue
        if packet.is_corrupt:
            break
        end = max(end, packet.pts + (packet.duration or 0))
        seen += 1
        if limit is not None and seen >= limit:
            break
    return float((end - start) * stream.time_base) if end else 0.0


def _data_end(container: av.container.InputContainer, stream: av.video.VideoStream, duration: float) -> float:
    """Seconds (from the stream start) where the whole packets end: the last second demuxed; when nothing
    whole is there, a bisection over time (8 seeks of one packet each) for the last stretch that is, then
    that stretch demuxed to the end."""
    tail = _intact_end(container, stream, duration - TAIL_SECONDS)
    if tail:
        return tail
    lo, hi = 0.0, max(duration - TAIL_SECONDS, 0.0)
    for _ in range(8):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _intact_end(container, stream, mid, limit=1) else (lo, mid)
    return _intact_end(container, stream, lo)


def _check(file: VideoFile, container: av.container.InputContainer, cfg: DataConfig,
           cut: tuple[str, int] | None = None) -> Facts | Skip:
    """What an opened file's bytes say; ``cut``: what :func:`mov_cut` found (full probes only)."""
    fmt = container.format.name
    if fmt.endswith("_pipe") or fmt in ("image2", "gif", "apng", "webp"):
        return Skip(file.uri, Reason.NOT_VIDEO, f"an image ({fmt})")
    if not container.streams.video:
        if container.streams.audio:
            return Skip(file.uri, Reason.AUDIO_ONLY, f"{len(container.streams.audio)} audio stream(s), no video")
        if cut is not None or (not container.streams and fmt.startswith("mov")):
            return Skip(file.uri, Reason.TRUNCATED, "no complete moov atom (the index): the file is cut short or "
                                                    "was never finished")
        return Skip(file.uri, Reason.NOT_VIDEO, f"no video stream ({fmt})")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        return Skip(file.uri, Reason.CODEC, "no decoder here for the video stream's codec")
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    if stream.duration is not None:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = (container.duration or 0) / av.time_base
    width, height, rotation, mirrored = stream.codec_context.width, stream.codec_context.height, 0, False
    if cfg.probe == "full":
        first = next(container.decode(stream), None)
        if first is None:
            return Skip(file.uri, Reason.DECODE, "no decodable frame")
        width, height, (rotation, mirrored) = first.width, first.height, Orientation.of(first).rotation()
        del first
        if cut is not None:
            box, should = cut
            ends = _data_end(container, stream, duration)
            return Skip(file.uri, Reason.TRUNCATED, f"{file.size:,} of {should:,} bytes ({file.size / should:.0%}; "
                                                    f"the {box} box runs past the end): whole frames up to "
                                                    f"{ends:.2f} s of {duration:.2f} s")
        ends = _data_end(container, stream, duration)
        if ends < duration - max(END_SLACK, 2.0 / rate if rate else 0.0):
            return Skip(file.uri, Reason.TRUNCATED, f"data ends at {ends:.2f} s of {duration:.2f} s")
    return Facts(codec=stream.codec_context.name, width=width, height=height, rate=rate, duration=duration,
                 rotation=rotation, mirrored=mirrored)


def judge(file: VideoFile, found: Facts | Skip, cfg: DataConfig) -> VideoInfo | Skip:
    """The verdict on one video for this data config: its facts with the clip estimate, or why it is unusable."""
    if isinstance(found, Skip):
        return found
    frames, clips = estimate_clips(found.duration, found.rate, cfg)
    if clips == 0:
        return Skip(file.uri, Reason.TOO_SHORT, f"{found.duration:.2f} s = {frames} frames at {cfg.fps:g} fps; "
                                                f"a clip needs {cfg.clip_frames}")
    return VideoInfo(uri=file.uri, split=file.split, size=file.size, codec=found.codec, width=found.width,
                     height=found.height, fps=round(found.rate, 3), duration=round(found.duration, 3),
                     rotation=found.rotation, mirrored=found.mirrored, clips=clips)


def probe_video(file: VideoFile, cfg: DataConfig) -> VideoInfo | Skip:
    """Check one video; never raises for a bad file (the Skip says why)."""
    return judge(file, probe_facts(file, cfg), cfg)


def probe_facts(file: VideoFile, cfg: DataConfig) -> Facts | Skip:
    """What the file's bytes say (``cfg.probe`` sets how much is read; nothing else of ``cfg`` matters); never
    raises for a bad file."""
    if file.size == 0:
        return Skip(file.uri, Reason.EMPTY, "0 bytes")
    try:
        with open_input(file.uri, cfg) as f:
            cut = mov_cut(f, file.size) if cfg.probe == "full" else None
            f.seek(0)
            try:
                container = open_container(f, PROBE_BUFFER)
            except av.FFmpegError as exc:
                f.seek(0)
                if f.read(12)[4:8] in MOV_BOXES:
                    return Skip(file.uri, Reason.TRUNCATED, "MOV/MP4 boxes but no readable index (moov atom): "
                                                            "cut short or never finished")
                return Skip(file.uri, Reason.NOT_VIDEO, _message(exc))
            with container:
                return _check(file, container, cfg, cut)
    except av.error.DecoderNotFoundError as exc:
        return Skip(file.uri, Reason.CODEC, _message(exc))
    except av.FFmpegError as exc:
        return Skip(file.uri, Reason.DECODE, _message(exc))
    except OSError as exc:
        return Skip(file.uri, Reason.READ, _message(exc))


def probe_info(uri: str, cfg: DataConfig) -> Skip | None:
    """None when the info JSON parses to an object, else why not."""
    try:
        data = json.loads(read_bytes(uri, cfg))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Skip(uri, Reason.BAD_INFO, str(exc))
    except OSError as exc:
        return Skip(uri, Reason.READ, _message(exc))
    return None if isinstance(data, dict) else Skip(uri, Reason.BAD_INFO, "top level is not a JSON object")
