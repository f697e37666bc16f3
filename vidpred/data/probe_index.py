"""The probe index: what probing found about each file of a dataset, kept between runs.

Probing every video before training (``report.survey``) opens each one, and BDD100K has 80,000 train+val
videos: minutes before every run (docs/data.md, "Start-up at scale"). A dataset does not change between most
runs, so the survey keeps, per dataset root, what each probe found that depends only on the file's bytes
(:class:`~vidpred.data.probe.Facts`, or a skip whose reason is one of ``probe.CONTENT_REASONS``) together with
the file's size and modification time as the listing shows them (on S3: the object's LastModified, which
every write of the key renews). The next survey reuses an entry when both match, probes the files that are
new or changed, and writes the index again when anything differs: the entries of the folders it listed are
replaced by what it found there (deleted files drop out), those of folders it did not list keep theirs (a
training run lists train and val; ``data inspect`` also test). The clip count and ``shorter than one clip``
depend on the data config (fps, context, future, stride) and are computed again from the facts every time
(``probe.judge``), so a changed clip length needs no new probe; ``data.probe`` (full or header) reads
different amounts of each file, so each mode has an index of its own. Read errors are never kept: a storage
failure may pass. The index cannot see damage that leaves size and modification time as they were (a
file rewritten in place with the same size and its old time restored); ``data.probe_index=refresh`` probes
everything again.

Where: ``data.probe_index_dir``, by default ``<data.cache_dir>/probe-index``, one JSON file per (root, probe
mode, S3 endpoint) named by their hash. Local by default because datasets often live in buckets the run may
only read (a shared or public copy of BDD100K): the index must not need write access to the data, and must
not mix the entries of users or runs that probe differently; a local file also reads in well under a second.
On a cluster whose driver's disk does not outlive the job (a KubeRay job pod) point ``data.probe_index_dir``
at a volume or a writable ``s3://`` prefix. Written atomically (a temp file renamed into place; on S3 the
object appears only when its upload completes), so a killed run leaves the old index or the new one. Two runs
finishing together: the last write wins, and what the other added is probed again next time.

A corrupt, unreadable or foreign index (another format version, another root or mode in the file) is
ignored with a warning and everything is probed again; a malformed entry counts as missing; a failed write
warns and the run goes on. ``data.probe_index=off`` neither reads nor writes one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from vidpred.config import DataConfig, is_remote_uri
from vidpred.data.probe import CONTENT_REASONS, Facts, Reason, Skip
from vidpred.storage import Listed, S3Settings, join, read_bytes, s3_endpoint_and_region, write_bytes

FORMAT = 1
FOLDER = "probe-index"   # under data.cache_dir unless data.probe_index_dir is set
log = logging.getLogger("vidpred.data")

MISS = object()          # ``ProbeIndex.get``: no usable entry; the file must be probed
Result = Facts | Skip | None   # a video's facts, a content skip, or None: an info JSON that parses


def identity(cfg: DataConfig, root: str) -> dict[str, Any]:
    """What an index belongs to: the dataset root, the probe mode, and for S3 the endpoint (the same bucket
    name on two servers is two datasets)."""
    endpoint = s3_endpoint_and_region(S3Settings.of(cfg))[0] if is_remote_uri(root) else None
    return {"format": FORMAT, "root": root.rstrip("/"), "probe": cfg.probe, "endpoint": endpoint}


def index_uri(cfg: DataConfig, root: str) -> str:
    """The index file of ``root`` for this config's probe mode."""
    base = cfg.probe_index_dir or str(Path(cfg.cache_dir) / FOLDER)
    key = hashlib.sha256(json.dumps(identity(cfg, root), sort_keys=True).encode()).hexdigest()[:24]
    return join(base, f"{key}.json")


def encode(result: Result) -> list | None:
    """The stored form of a probe result (after size and mtime); None for one that must not be kept."""
    if isinstance(result, Facts):
        return ["v", result.codec, result.width, result.height, result.rate, result.duration, result.rotation,
                result.mirrored]
    if isinstance(result, Skip):
        return ["s", str(result.reason), result.detail] if result.reason in CONTENT_REASONS else None
    return ["i"]


def decode(stored: list, uri: str) -> Result:
    """``encode``'s inverse for the file at ``uri``; ValueError when the entry is malformed."""
    kind = stored[0] if stored else None
    if kind == "i" and len(stored) == 1:
        return None
    if kind == "s" and len(stored) == 3 and isinstance(stored[2], str):
        reason = Reason(stored[1])
        if reason in CONTENT_REASONS:
            return Skip(uri, reason, stored[2])
    if kind == "v" and len(stored) == 8:
        codec, width, height, rate, duration, rotation, mirrored = stored[1:]
        numbers = (width, height, rotation)
        if (isinstance(codec, str) and all(isinstance(n, int) and not isinstance(n, bool) for n in numbers)
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (rate, duration))
                and isinstance(mirrored, bool)):
            return Facts(codec=codec, width=width, height=height, rate=float(rate), duration=float(duration),
                         rotation=rotation, mirrored=mirrored)
    raise ValueError(f"malformed probe index entry {stored!r}")


def _folder(rel: str) -> str:
    return rel.rsplit("/", 1)[0] if "/" in rel else ""


class ProbeIndex:
    """One root's index while a survey runs: ``get`` before probing a listed file, ``put`` after, ``listed``
    for every folder listed, then ``save``."""

    def __init__(self, cfg: DataConfig, root: str):
        self.cfg, self.root, self.uri = cfg, root.rstrip("/"), index_uri(cfg, root)
        self.reuse = cfg.probe_index == "use"   # refresh: probe every listed file, keep the other folders' entries
        self.loaded = self._read()
        self.fresh: dict[str, list] = {}   # the entries of the folders listed by this survey
        self.folders: set[str] = set()
        self.malformed = 0

    @classmethod
    def open(cls, cfg: DataConfig, root: str) -> ProbeIndex | None:
        """The root's index as stored (empty when there is none or it cannot be used); None with
        ``data.probe_index=off``."""
        return None if cfg.probe_index == "off" else cls(cfg, root)

    def _read(self) -> dict[str, list]:
        try:
            data = json.loads(read_bytes(self.uri, self.cfg))
        except FileNotFoundError:
            return {}   # a dataset not seen before
        except (OSError, ValueError) as exc:  # unreadable, not JSON, not UTF-8
            log.warning("probe index %s unusable (%s: %s): probing every file again", self.uri,
                        type(exc).__name__, exc)
            return {}
        want = identity(self.cfg, self.root)
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict) or {k: data.get(k) for k in want} != want:
            log.warning("probe index %s is not an index of %s with probe=%s (format %s): probing every file again",
                        self.uri, self.root, self.cfg.probe, FORMAT)
            return {}
        return files

    def relative(self, uri: str) -> str:
        return uri.removeprefix(self.root + "/")

    def listed(self, folder: str) -> None:
        """``folder`` (relative to the root, e.g. ``videos/train``) was listed: its stored entries are
        replaced by this survey's when saved."""
        self.folders.add(folder.strip("/"))

    def get(self, file: Listed) -> Result | object:
        """The stored result for ``file`` when its size and mtime are those stored, else :data:`MISS`."""
        rel = self.relative(file.uri)
        entry = self.loaded.get(rel)
        stamp = [file.size, file.mtime_ns]
        if not self.reuse or file.mtime_ns is None or not isinstance(entry, list) or entry[:2] != stamp:
            return MISS
        try:
            result = decode(entry[2:], file.uri)
        except (ValueError, TypeError):
            self.malformed += 1
            return MISS
        self.fresh[rel] = entry
        return result

    def put(self, file: Listed, result: Result) -> None:
        """Keep what probing ``file`` found (not a read error; not without an mtime to check it by)."""
        stored = encode(result)
        if stored is not None and file.mtime_ns is not None:
            self.fresh[self.relative(file.uri)] = [file.size, file.mtime_ns, *stored]

    def save(self) -> bool:
        """Write the index when it changed; True when written. A failed write is a warning, not an error."""
        if self.malformed:
            log.warning("probe index %s: %d malformed entries ignored (those files were probed again)", self.uri,
                        self.malformed)
        kept = {rel: e for rel, e in self.loaded.items() if _folder(rel) not in self.folders}
        files = {**kept, **self.fresh}
        if files == self.loaded:
            return False
        data = {**identity(self.cfg, self.root), "files": files}
        try:
            write_bytes(self.uri, json.dumps(data, separators=(",", ":")).encode(), self.cfg)
        except OSError as exc:
            log.warning("probe index %s not written (%s): the next run probes these files again", self.uri, exc)
            return False
        return True
