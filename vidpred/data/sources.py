"""Dataset URIs → the videos of a split, and a readable file for each.

A dataset is a BDD100K-layout tree ``<root>/videos/{train,val,test}/*.mov|*.mp4`` under a local directory
or an ``s3://bucket/prefix``. Everything goes through ``pyarrow.fs``, so listing and reading look the same
for both; S3 endpoint and credentials come the standard AWS ways (environment, profile, instance role).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow.fs as pafs

VIDEO_SUFFIXES = (".mov", ".mp4")
SPLITS = ("train", "val", "test")


class DataError(RuntimeError):
    """The dataset cannot be used at all (missing tree, no usable videos)."""


@dataclass(frozen=True)
class VideoFile:
    uri: str      # full URI, e.g. /data/videos/train/a.mov or s3://bucket/videos/train/a.mov
    split: str
    size: int

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]


@functools.lru_cache(maxsize=16)
def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(root)


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """``uri`` → (filesystem, path inside it). Filesystems are cached per process."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return pafs.LocalFileSystem(), uri
    if scheme == "file":
        return pafs.LocalFileSystem(), rest
    bucket = rest.split("/", 1)[0]
    fs, _ = _filesystem(f"{scheme}://{bucket}")
    return fs, rest


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def list_videos(root: str, split: str) -> list[VideoFile]:
    """Videos of one split, sorted by URI; an absent split folder gives an empty list."""
    fs, base = resolve(root)
    selector = pafs.FileSelector(join(base, "videos", split), recursive=False, allow_not_found=True)
    prefix = root[: len(root) - len(base)] if root.endswith(base) else ""
    found = [
        VideoFile(uri=prefix + info.path, split=split, size=info.size or 0)
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.path.lower().endswith(VIDEO_SUFFIXES)
    ]
    return sorted(found, key=lambda v: v.uri)


def open_video(uri: str) -> BinaryIO:
    """A seekable read-only file for PyAV; streams from S3 instead of copying the object."""
    fs, path = resolve(uri)
    return fs.open_input_file(path)
