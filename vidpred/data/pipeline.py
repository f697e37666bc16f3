"""The Ray Data dataset: list a split, decode each video in its own map task, cut clips.

One block per file (``override_num_blocks``) keeps the pipeline streaming: the first clips reach the
trainer long before the last video is decoded, and nothing holds the whole dataset. A video that cannot be
decoded is skipped with its reason logged; it never stops the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from vidpred.config import DataConfig
from vidpred.data.clips import windows
from vidpred.data.decode import decode_frames
from vidpred.data.sources import DataError, VideoFile, list_videos, open_video

log = logging.getLogger("vidpred.data")


def video_clips(uri: str, cfg: DataConfig) -> Iterator[np.ndarray]:
    """All clips of one video: (context + future, H, W, 3) uint8 windows."""
    with open_video(uri) as f:
        frames = decode_frames(f, cfg.fps, cfg.height, cfg.width)
        yield from windows(frames, cfg.clip_frames, cfg.stride)


class ClipsFromVideo:
    """Ray Data ``flat_map`` function: one file row → its clip rows; bad files give none and a warning."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    def __call__(self, row: dict[str, Any]) -> list[dict[str, np.ndarray]]:
        uri = row["uri"]
        try:
            return [{"frames": clip} for clip in video_clips(uri, self.cfg)]
        except Exception as exc:  # noqa: BLE001 - any decode failure means "skip this file", never the run
            log.warning("skipping video %s: %s: %s", uri, type(exc).__name__, exc)
            return []


def videos_or_fail(cfg: DataConfig, root: str, split: str) -> list[VideoFile]:
    files = list_videos(root, split)
    if not files:
        raise DataError(f"no videos (*.mov, *.mp4) under {root}/videos/{split}")
    return files


def build_dataset(cfg: DataConfig, root: str, split: str, seed: int = 0):
    """A streaming Ray Dataset of ``{"frames": uint8 (T, H, W, 3)}`` rows for one split."""
    import ray.data

    files = videos_or_fail(cfg, root, split)
    items = [{"uri": f.uri} for f in files]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.randomize_block_order(seed=seed) if split == "train" else ds
    return ds.flat_map(ClipsFromVideo(cfg))
