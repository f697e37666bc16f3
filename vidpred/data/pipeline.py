"""The Ray Data dataset: one row per usable file, decoded by map tasks into clip rows.

The files come from :class:`FileSource`, a Ray Data datasource whose read tasks are made where the dataset
executes, one per file up to :data:`MAX_READ_TASKS` files and that many tasks beyond (consecutive files of
the epoch's order each): the pipeline streams (the first clips reach the trainer long before the last video
is decoded, and nothing holds the whole dataset), and its cost at the start does not grow with the file
count past that. The order of all files is reshuffled per execution, i.e. per epoch, reproducibly for a seed
— from ``(seed, execution index)``, as Ray Data's own file datasources shuffle (``FileShuffleConfig``).
A file that fails while decoding is skipped with its reason (sent to the run's
:class:`~vidpred.data.report.SkipLog` when there is one, logged always); it never stops the run. Clips
reach the trainer as ``{"frames": uint8 (T, H, W, 3)}`` rows and nothing else.

A source is a raw video (``.mov``/``.mp4``, decoded by PyAV) or a prepared file (``.parquet``, frames
already at the training fps and size, see :mod:`vidpred.data.prepared`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from typing import Any

import av
import numpy as np
import pyarrow as pa
import ray.data
import torch
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from vidpred.config import DataConfig
from vidpred.data.clips import windows
from vidpred.data.decode import decode_frames
from vidpred.data.prepared import read_prepared_frames
from vidpred.data.probe import Reason, Skip
from vidpred.data.sources import PREPARED_SUFFIX, DataError, VideoFile, list_videos
from vidpred.raycompat import execution_index
from vidpred.storage import open_input

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


# Read tasks of one execution at most. ``ray.data.from_items`` with a block per file (what this replaced) put
# every block into the object store from the building process before the first task ran: minutes and
# hundreds of MB of driver memory at 100,000 files, every run (docs/data.md). A bounded number of read tasks
# costs the same at any file count, and 1,000 still keep 1,000 decode slots busy on a large cluster.
MAX_READ_TASKS = 1000
# Past MAX_READ_TASKS files, the first this many tasks of an epoch still read one file each: a task's clips
# leave it in blocks of up to Ray Data's target block size (128 MiB), so the epoch's first batch would wait
# for a whole share of files (at 100,000 files, 100 of them; of BDD100K's 40 s videos, a dozen decoded before
# the first block) instead of one.
SINGLE_FILE_TASKS = 100


def epoch_order(n: int, seed: int | None, execution: int) -> list[int]:
    """The file positions in the order execution ``execution`` reads them: listed order without a seed, else
    a permutation drawn from ``(seed, execution)`` (the same pair, the same order: a resumed run replays it)."""
    if seed is None:
        return list(range(n))
    return np.random.default_rng((seed, execution)).permutation(n).tolist()


def _uri_block(uris: list[str]) -> list[pa.Table]:
    return [pa.table({"uri": pa.array(uris, pa.string())})]


class FileSource(Datasource):
    """``{"uri"}`` rows of a fixed list of files, in the order :func:`epoch_order` draws for each execution:
    the read tasks are made from the executing ``DataContext`` (its execution index, counted from
    ``first_epoch``: a resumed run replays the epoch it stopped in), wherever the dataset executes, never put
    in the object store by the process that builds the dataset."""

    def __init__(self, uris: list[str], seed: int | None, first_epoch: int = 0):
        super().__init__()
        self.uris, self.seed, self.first_epoch = uris, seed, first_epoch

    def estimate_inmemory_data_size(self) -> int:
        return sum(map(len, self.uris))

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: ray.data.DataContext | None = None) -> list[ReadTask]:
        execution = self.first_epoch + execution_index(data_context)
        order = np.asarray(epoch_order(len(self.uris), self.seed, execution), dtype=np.int64)
        count = max(min(parallelism, len(self.uris)), 1)
        single = min(SINGLE_FILE_TASKS, count - 1) if len(self.uris) > count else 0
        tasks = []
        for part in [order[i:i + 1] for i in range(single)] + np.array_split(order[single:], count - single):
            chunk = [self.uris[i] for i in part]
            meta = BlockMetadata(num_rows=len(chunk), size_bytes=sum(map(len, chunk)), input_files=None,
                                 exec_stats=None)
            tasks.append(ReadTask(functools.partial(_uri_block, chunk), meta, per_task_row_limit=per_task_row_limit))
        return tasks


def file_dataset(uris: list[str], seed: int | None, first_epoch: int = 0):
    """``{"uri"}`` rows, one read task per file up to :data:`MAX_READ_TASKS` (beyond, the first
    :data:`SINGLE_FILE_TASKS` of each epoch still one file each); the file order reshuffled every execution
    (epoch) from ``seed`` (listed order when None), the first execution reading epoch ``first_epoch``'s."""
    return ray.data.read_datasource(FileSource(uris, seed, first_epoch),
                                    override_num_blocks=max(min(len(uris), MAX_READ_TASKS), 1))


def videos_or_fail(cfg: DataConfig, root: str, split: str) -> list[VideoFile]:
    files = list_videos(root, split, cfg)
    if not files:
        raise DataError(f"no videos (*.mov, *.mp4) under {root}/videos/{split}")
    return files


def build_dataset(cfg: DataConfig, root: str, split: str, seed: int | None = None, *,
                  uris: list[str] | None = None, skip_log: Any = None, first_epoch: int = 0):
    """A streaming Ray Dataset of ``{"frames": uint8 (T, H, W, 3)}`` rows: ``uris`` (the usable files a
    survey found) or else every file listed in ``root/videos/split``; its first execution reads the file
    order of epoch ``first_epoch``, each later one the next epoch's."""
    if uris is None:
        uris = [v.uri for v in videos_or_fail(cfg, root, split)]
    return file_dataset(uris, seed, first_epoch).flat_map(ClipsFromVideo(cfg, skip_log))


def clip_batches(shard, cfg: DataConfig, batch_size: int, seed: int, prefetch: int = 2) -> Iterator[torch.Tensor]:
    """uint8 clip batches [batch_size, T, H, W, 3] from a dataset of :func:`build_dataset` or a Ray Train shard
    of it, one pass. A file's clips leave its decoder together, so they are mixed first in a local shuffle
    buffer of ``cfg.shuffle_clips`` clips (``data.shuffle_buffer`` of memory, seeded by ``seed``): with room
    for many files' clips a batch holds clips of many videos, not neighbouring seconds of one."""
    for batch in shard.iter_torch_batches(batch_size=batch_size, dtypes=torch.uint8, drop_last=False,
                                          prefetch_batches=prefetch, local_shuffle_buffer_size=cfg.shuffle_clips,
                                          local_shuffle_seed=seed):
        yield batch["frames"]
