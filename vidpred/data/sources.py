"""A dataset's layout: the splits of a BDD100K-style tree and the videos of each, local or on S3.

A dataset is ``<root>/videos/{train,val,test}/*.mov|*.mp4`` (optional ``<root>/info/{split}/<video name>.json``
GPS/IMU files) under a local directory or an ``s3://bucket/prefix``; reaching, listing and reading the files
is :mod:`vidpred.storage`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

from vidpred.storage import StorageError, join, list_files, resolve, scheme_prefix, storage_error

if TYPE_CHECKING:
    from vidpred.config import DataConfig

VIDEO_SUFFIXES = (".mov", ".mp4")
PREPARED_SUFFIX = ".parquet"   # frames already at the training fps and size (see vidpred.data.prepared)
SPLITS = ("train", "val", "test")


class DataError(StorageError):
    """The dataset cannot be used at all (missing tree or videos/ folder, no usable clip); storage failures
    underneath it are :class:`~vidpred.storage.StorageError`, of which this is one kind."""


@dataclass(frozen=True)
class VideoFile:
    uri: str      # full URI, e.g. /data/videos/train/a.mov or s3://bucket/videos/train/a.mov
    split: str
    size: int

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]


def split_of(uri: str) -> str:
    """The split a URI of the layout belongs to: ``…/videos|info/<split>/<file>`` or the folder
    ``…/videos/<split>`` itself; ``""`` for anything else."""
    parts = uri.rstrip("/").split("/")
    if len(parts) >= 3 and parts[-2] in SPLITS and parts[-3] in ("videos", "info"):
        return parts[-2]
    if len(parts) >= 2 and parts[-1] in SPLITS and parts[-2] == "videos":
        return parts[-1]
    return ""


def check_root(root: str, cfg: DataConfig | None = None) -> None:
    """Raise DataError unless ``root`` is reachable and holds a ``videos/`` folder."""
    fs, base = resolve(root, cfg)
    if not scheme_prefix(root):
        kind = fs.get_file_info(base).type
        if kind == pafs.FileType.NotFound:
            raise DataError(f"{root}: does not exist; expected a dataset folder holding videos/{{train,val}}/")
        if kind != pafs.FileType.Directory:
            raise DataError(f"{root}: is a file, not a folder; expected a dataset folder holding videos/{{train,val}}/")
    try:
        if scheme_prefix(root) and fs.get_file_info(base.split("/", 1)[0]).type == pafs.FileType.NotFound:
            raise DataError(f"{root}: bucket {base.split('/', 1)[0]!r} does not exist")
        if fs.get_file_info(join(base, "videos")).type != pafs.FileType.Directory:
            raise DataError(f"{root}: no videos/ folder (expected the BDD100K layout videos/{{train,val,test}}/)")
    except OSError as exc:
        raise storage_error(root, exc) from None


def list_videos(root: str, split: str, cfg: DataConfig | None = None) -> list[VideoFile]:
    """Videos of one split, sorted by URI; an absent split folder gives an empty list."""
    found = list_files(root, f"videos/{split}", (*VIDEO_SUFFIXES, PREPARED_SUFFIX), cfg) or []
    return [VideoFile(uri=f.uri, split=split, size=f.size) for f in found]
