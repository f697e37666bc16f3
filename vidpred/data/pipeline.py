"""The Ray Data dataset: one row per usable file, each decoded in its own map task into clip rows.

One block per file (``override_num_blocks``) keeps the pipeline streaming: the first clips reach the
trainer long before the last video is decoded, and nothing holds the whole dataset. The file order is
shuffled per execution, i.e. per epoch, reproducibly for a seed (Ray Data's ``RandomSeedConfig`` with
``reseed_after_execution``). A file that fails while decoding is skipped with its reason (sent to the run's
:class:`~vidpred.data.report.SkipLog` when there is one, logged always); it never stops the run. Clips
reach the trainer as ``{"frames": uint8 (T, H, W, 3)}`` rows and nothing else.

A source is a raw video (``.mov``/``.mp4``, decoded by PyAV) or a prepared file (``.parquet``, frames
already at the training fps and size, see :mod:`vidpred.data.prepared`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import av
import numpy as np

from vidpred.config import DataConfig
from vidpred.data.clips import windows
from vidpred.data.decode import decode_frames
from vidpred.data.prepared import read_prepared_frames
from vidpred.data.probe import Reason, Skip
from vidpred.data.sources import PREPARED_SUFFIX, DataError, VideoFile, list_videos, open_input

log = logging.getLogger("vidpred.data")


def frames_of(uri: str, cfg: DataConfig) -> Iterator[np.ndarray]:
    """uint8 (H, W, 3) frames at the training fps and size, from a raw or a prepared file."""
    if uri.endswith(PREPARED_SUFFIX):
        yield from read_prepared_frames(uri, cfg)
        return
    with open_input(uri, cfg) as f:
        yield from decode_frames(f, cfg.fps, cfg.height, cfg.width)


def video_clips(uri: str, cfg: DataConfig) -> Iterator[np.ndarray]:
    """All clips of one file: (context + future, H, W, 3) uint8 windows."""
    yield from windows(frames_of(uri, cfg), cfg.clip_frames, cfg.stride)


class ClipsFromVideo:
    """Ray Data ``flat_map`` function: one file row → its clip rows; a bad file ends early and is reported."""

    def __init__(self, cfg: DataConfig, skip_log: Any = None):
        self.cfg = cfg
        self.skip_log = skip_log  # a SkipLog actor handle, or None

    def report(self, skip: Skip) -> None:
        log.warning("skipping video %s: %s%s", skip.uri, skip.reason, f": {skip.detail}" if skip.detail else "")
        if self.skip_log is not None:
            self.skip_log.add.remote(skip)

    def __call__(self, row: dict[str, Any]) -> Iterator[dict[str, np.ndarray]]:
        uri, made = row["uri"], 0
        try:
            for clip in video_clips(uri, self.cfg):
                made += 1
                yield {"frames": clip}
        except Exception as exc:  # noqa: BLE001 - any failure of one file means "skip the rest of it", never the run
            reason = Reason.READ if isinstance(exc, OSError) and not isinstance(exc, av.FFmpegError) else Reason.DECODE
            self.report(Skip(uri, reason, f"after {made} clips: {type(exc).__name__}: {exc}"))
            return
        if made == 0:
            self.report(Skip(uri, Reason.TOO_SHORT, f"decoded fewer than {self.cfg.clip_frames} frames"))


def file_dataset(uris: list[str], seed: int | None):
    """One block per file; the block order reshuffled every execution (epoch) from ``seed``."""
    import ray.data

    ds = ray.data.from_items([{"uri": u} for u in uris], override_num_blocks=max(len(uris), 1))
    if seed is None:
        return ds
    return ds.randomize_block_order(seed=ray.data.RandomSeedConfig(seed=seed, reseed_after_execution=True))


def videos_or_fail(cfg: DataConfig, root: str, split: str) -> list[VideoFile]:
    files = list_videos(root, split, cfg)
    if not files:
        raise DataError(f"no videos (*.mov, *.mp4) under {root}/videos/{split}")
    return files


def build_dataset(cfg: DataConfig, root: str, split: str, seed: int | None = None, *,
                  uris: list[str] | None = None, skip_log: Any = None):
    """A streaming Ray Dataset of ``{"frames": uint8 (T, H, W, 3)}`` rows: ``uris`` (the usable files a
    survey found) or else every file listed in ``root/videos/split``."""
    if uris is None:
        uris = [v.uri for v in videos_or_fail(cfg, root, split)]
    return file_dataset(uris, seed).flat_map(ClipsFromVideo(cfg, skip_log))
