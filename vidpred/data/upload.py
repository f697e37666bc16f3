"""``vidpred data upload LOCAL s3://bucket/prefix``: copy a dataset tree to S3, resumably.

Files go up in parallel (``workers`` files at once, each a multipart upload of ``part_size`` parts sent by
boto3's transfer threads). An object that already exists with the same size and the same ETag (computed
locally the way S3 computes it for this part size) is skipped, so rerunning after an interruption sends only
what is missing; an interrupted multipart upload never becomes a visible object, and the next run aborts it
(its parts cost storage until then), as a failed file's own upload is aborted at once. Endpoint and
credentials come the standard AWS ways, or ``data.s3_endpoint``; requests are retried with backoff.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from vidpred.config import DataConfig
from vidpred.data.sources import DataError
from vidpred.storage import S3Settings, check_reachable, s3_endpoint_and_region, storage_error

MIB = 1 << 20


@dataclass
class UploadResult:
    uploaded: int = 0
    skipped: int = 0
    bytes_sent: int = 0
    aborted: int = 0   # incomplete multipart uploads left by earlier runs, aborted


class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal, every 5 s otherwise)."""

    def __init__(self, total_bytes: int, files: int, enabled: bool = True):
        self.total, self.files, self.enabled = max(total_bytes, 1), files, enabled
        self.done_bytes = self.done_files = 0
        self.started = self.shown = time.monotonic()
        self.lock = threading.Lock()

    def add(self, nbytes: int = 0, files: int = 0) -> None:
        with self.lock:
            self.done_bytes += nbytes
            self.done_files += files
            now = time.monotonic()
            if self.enabled and (sys.stderr.isatty() or now - self.shown > 5 or self.done_files == self.files):
                self.shown = now
                share = self.done_bytes / self.total
                bar = "#" * int(30 * share)
                rate = self.done_bytes / MIB / max(now - self.started, 1e-6)
                end = "\r" if sys.stderr.isatty() and self.done_files < self.files else "\n"
                print(f"[{bar:<30}] {share:6.1%} {self.done_files}/{self.files} files {rate:7.1f} MiB/s",
                      end=end, file=sys.stderr, flush=True)


def s3_client(cfg: DataConfig):
    """A boto3 client from a fresh session: the environment and profile as they are now (boto3's default
    session caches the config files and credentials it first read)."""
    import boto3
    from botocore.config import Config

    endpoint, region = s3_endpoint_and_region(S3Settings.of(cfg))
    check_reachable(endpoint, region)  # refused / unknown host: seconds, not boto3's retries of them
    say_retries()
    retries = {"max_attempts": cfg.s3_max_attempts, "mode": "standard"}
    return boto3.session.Session().client("s3", endpoint_url=cfg.s3_endpoint, config=Config(retries=retries))


class _RetryNotice(logging.Handler):
    """boto3 retries throttling, 5xx and dropped connections with backoff; this says so on stderr, once per
    retry, instead of a silent wait (botocore logs each at DEBUG: "Retry needed, retrying request after delay
    of: ...")."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("Retry needed"):
            print(f"[vidpred] S3: {text.lower().removeprefix('retry needed, ')}", file=sys.stderr, flush=True)


def say_retries() -> None:
    logger = logging.getLogger("botocore.retries.standard")
    if not any(isinstance(h, _RetryNotice) for h in logger.handlers):
        logger.addHandler(_RetryNotice(level=logging.DEBUG))
        logger.setLevel(logging.DEBUG)


def split_s3_uri(uri: str) -> tuple[str, str]:
    scheme, sep, rest = uri.partition("://")
    if scheme not in ("s3", "s3a") or not sep or not rest:
        raise DataError(f"{uri}: the destination must be s3://bucket[/prefix]")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


def s3_etag(path: Path, part_size: int) -> str:
    """The ETag S3 gives ``path`` uploaded with this part size: MD5, or MD5 of the parts' MD5s + ``-N``."""
    digests = []
    with open(path, "rb") as f:
        while chunk := f.read(part_size):
            digests.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    if path.stat().st_size < part_size:  # one PUT (boto3 goes multipart from part_size on)
        return (digests[0] if digests else hashlib.md5(b"", usedforsecurity=False).digest()).hex()
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def existing_objects(client, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """key → (size, ETag) of every object under ``prefix`` (paginated: 1,000 keys a request)."""
    found: dict[str, tuple[int, str]] = {}
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "")
    for page in pages:
        for obj in page.get("Contents", []):
            found[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
    return found


def incomplete_uploads(client, bucket: str, prefix: str) -> list[tuple[str, str]]:
    """(key, upload id) of the multipart uploads under ``prefix`` neither completed nor aborted (paginated)."""
    pages = client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix)
    return [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", [])]


def abort_incomplete(client, bucket: str, prefix: str, keys: set[str]) -> int:
    """Abort the incomplete multipart uploads of ``keys`` under ``prefix`` (their parts are deleted); how many."""
    stale = [(key, upload_id) for key, upload_id in incomplete_uploads(client, bucket, prefix) if key in keys]
    for key, upload_id in stale:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    return len(stale)


def abort_stale(client, bucket: str, prefix: str, keys: set[str]) -> int:
    """Before any upload of this run: abort what earlier runs left for this tree's keys. Without the permission
    (``s3:ListBucketMultipartUploads``, ``s3:AbortMultipartUpload``) or server support: a warning, no failure."""
    from botocore.exceptions import BotoCoreError, ClientError

    # This tree's keys only, not all under the prefix: a prefix may be shared, and other writers' uploads in
    # progress are not ours to cancel (a bucket lifecycle rule reclaims the rest). Listed before this run starts
    # an upload, so none is ours; no timestamp comparison, so no trust in the server's clock.
    try:
        return abort_incomplete(client, bucket, prefix, keys)
    except (ClientError, BotoCoreError) as exc:
        print(f"[vidpred] warning: incomplete multipart uploads under s3://{bucket}/{prefix} not cleaned up ({exc})",
              file=sys.stderr)
        return 0


def upload(local: str | Path, dest: str, cfg: DataConfig | None = None, workers: int = 8,
           part_size: int = 16 * MIB, progress: bool = True) -> UploadResult:
    """Upload every file under ``local`` to ``dest`` (s3://bucket/prefix) keeping relative paths."""
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError

    cfg = cfg or DataConfig()
    root = Path(local)
    if not root.is_dir():
        raise DataError(f"{local}: not a directory")
    if workers < 1:
        raise DataError(f"--workers {workers}: must be at least 1 (files uploaded at once)")
    if part_size < 5 * MIB:
        raise DataError(f"part size {part_size / MIB:g} MiB: S3 multipart parts must be at least 5 MiB")
    bucket, prefix = split_s3_uri(dest)
    client = s3_client(cfg)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    keys = {p: "/".join(filter(None, [prefix, p.relative_to(root).as_posix()])) for p in files}
    try:
        there = existing_objects(client, bucket, prefix)
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(dest, OSError(str(exc))) from None
    result = UploadResult(aborted=abort_stale(client, bucket, f"{prefix}/" if prefix else "", set(keys.values())))
    transfer = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=4)
    bar = Progress(sum(p.stat().st_size for p in files), len(files), progress)
    lock = threading.Lock()

    def one(path: Path) -> None:
        size, key = path.stat().st_size, keys[path]
        same = key in there and there[key][0] == size and there[key][1] == s3_etag(path, part_size)
        if not same:
            try:
                client.upload_file(str(path), bucket, key, Config=transfer, Callback=lambda n: bar.add(nbytes=n))
            except Exception:  # boto3 aborts its own multipart upload on failure; this is in case that failed
                with contextlib.suppress(ClientError, BotoCoreError):
                    abort_incomplete(client, bucket, key, {key})
                raise
        else:
            bar.add(nbytes=size)
        with lock:
            result.skipped += same
            result.uploaded += not same
            result.bytes_sent += 0 if same else size
        bar.add(files=1)

    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, files))
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(dest, OSError(str(exc))) from None
    return result
