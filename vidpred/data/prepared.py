"""The prepared-clip cache's format: each source video's frames, decoded once at the training fps and size.

Layout (local directory or S3 prefix), the raw tree's shape so every tool lists it the same way::

    DST/prepared.json                      manifest: format, fps, height, width, source URI, files, skips
    DST/videos/{split}/<name>.mov.parquet  one row per frame: ``frame`` = H*W*3 uint8 bytes (RGB),
                                           row groups of 32 frames, LZ4; fps/height/width in the schema

Frames, not clips, are stored: windows overlap (an 8-frame clip every 4 frames stores each frame twice) and
cutting them is free at read time, so ``context``, ``future`` and ``stride`` can change without preparing
again; ``fps``, ``height`` and ``width`` cannot, and a mismatch is refused. Why Parquet + LZ4 and not
H.264 or NPZ: lossless, many times faster to read than H.264, about the raw size (figures in docs/data.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vidpred.config import DataConfig
from vidpred.data.sources import PREPARED_SUFFIX, DataError
from vidpred.storage import atomic_output, join, open_input, read_bytes, resolve

FORMAT = "vidpred-prepared/1"
MANIFEST = "prepared.json"
ROW_GROUP_FRAMES = 32
COMPRESSION = "lz4"
_SCHEMA = pa.schema([("frame", pa.binary())])


def target_uri(dst: str, split: str, source_uri: str) -> str:
    return join(dst, "videos", split, source_uri.rsplit("/", 1)[-1] + PREPARED_SUFFIX)  # a.mov → a.mov.parquet


def _shape_meta(cfg: DataConfig) -> dict[bytes, bytes]:
    return {b"vidpred": json.dumps({"format": FORMAT, "fps": cfg.fps, "height": cfg.height,
                                    "width": cfg.width}).encode()}


def write_frames(uri: str, frames: Iterable[np.ndarray], cfg: DataConfig) -> int:
    """Stream frames into one prepared file (appears only when complete); returns the frame count."""
    schema = _SCHEMA.with_metadata(_shape_meta(cfg))
    count, pending = 0, []
    with atomic_output(uri, cfg) as out, pq.ParquetWriter(out, schema, compression=COMPRESSION) as writer:
        for frame in frames:
            pending.append(frame.tobytes())
            count += 1
            if len(pending) == ROW_GROUP_FRAMES:
                writer.write_table(pa.table({"frame": pending}, schema=schema))
                pending = []
        if pending:
            writer.write_table(pa.table({"frame": pending}, schema=schema))
    return count


def _check_shape(uri: str, meta: dict | None, cfg: DataConfig) -> None:
    want = {"fps": cfg.fps, "height": cfg.height, "width": cfg.width}
    have = {k: (meta or {}).get(k) for k in want}
    if (meta or {}).get("format") != FORMAT:
        raise DataError(f"{uri}: not a vidpred prepared file/tree (format {(meta or {}).get('format')!r})")
    if have != want:
        raise DataError(f"{uri}: prepared at fps={have['fps']:g} {have['width']}x{have['height']}, but the config "
                        f"asks for fps={cfg.fps:g} {cfg.width}x{cfg.height}: prepare again or use the raw data")


def read_prepared_frames(uri: str, cfg: DataConfig) -> Iterator[np.ndarray]:
    """Frames of one prepared file, a row group at a time (bounded memory)."""
    with open_input(uri, cfg) as f:
        pfile = pq.ParquetFile(f)
        raw = (pfile.schema_arrow.metadata or {}).get(b"vidpred")
        _check_shape(uri, json.loads(raw) if raw else None, cfg)
        shape = (cfg.height, cfg.width, 3)
        for group in range(pfile.num_row_groups):
            for value in pfile.read_row_group(group, columns=["frame"]).column(0).chunks:
                for frame in value.to_numpy(zero_copy_only=False):
                    yield np.frombuffer(frame, np.uint8).reshape(shape)


def frame_count(uri: str, cfg: DataConfig) -> int:
    with open_input(uri, cfg) as f:
        return pq.ParquetFile(f).metadata.num_rows


def read_manifest(root: str, cfg: DataConfig) -> dict | None:
    """The manifest of a prepared tree, checked against ``cfg``; None for a raw tree."""
    fs, base = resolve(root, cfg)
    if fs.get_file_info(join(base, MANIFEST)).type != pafs.FileType.File:
        return None
    manifest = json.loads(read_bytes(join(root, MANIFEST), cfg))
    _check_shape(root, manifest, cfg)
    return manifest


def manifest_for(cfg: DataConfig, source: str, files: dict[str, list[dict]], skipped: list[dict]) -> dict:
    return {"format": FORMAT, "fps": cfg.fps, "height": cfg.height, "width": cfg.width, "source": source,
            "splits": files, "skipped": skipped}
