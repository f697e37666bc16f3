"""URIs: where vidpred reads and writes — a local path or ``s3://bucket/prefix`` — for every stage.

Everything goes through ``pyarrow.fs``, so listing, reading and writing look the same for both. S3 endpoint and
credentials come the standard AWS ways (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` and friends, ``AWS_PROFILE``
/ shared config, instance and IRSA roles); ``data.s3_endpoint`` overrides the endpoint. Requests are retried
with the AWS SDK's standard strategy (exponential backoff with jitter) up to ``data.s3_max_attempts`` times;
listing pages through ``ListObjectsV2`` (1,000 keys a page). Writes are atomic: an object or file appears
complete or not at all. The data plane (videos, probe index, prepared clips), checkpoints, runs and Tune
experiments all come here; what a dataset *is* (its splits and videos) lives in :mod:`vidpred.data.sources`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import socket
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pyarrow.fs as pafs

from vidpred.config import UserError, is_remote_uri, remote_uri_problem

if TYPE_CHECKING:
    from vidpred.config import Config, DataConfig

DEFAULT_MAX_ATTEMPTS = 10
_AUTH_ERRORS = re.compile(r"ACCESS_DENIED|SIGNATURE_DOES_NOT_MATCH|INVALID_ACCESS_KEY_ID|InvalidAccessKeyId|"
                          r"AccessDenied|SignatureDoesNotMatch|ExpiredToken|NO_SUCH_BUCKET|NoSuchBucket")


class StorageError(UserError, RuntimeError):
    """A URI cannot be reached, read or written (no such bucket or folder, refused credentials, no endpoint);
    the message names the URI, never a secret."""


@dataclass(frozen=True)
class S3Settings:
    """What a process needs to reach S3; picklable, so Ray tasks rebuild the same filesystem."""

    endpoint: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    @classmethod
    def of(cls, cfg: DataConfig | None) -> S3Settings:
        if cfg is None:
            return cls()
        return cls(endpoint=cfg.s3_endpoint, max_attempts=cfg.s3_max_attempts)


def _profile() -> tuple[dict, dict]:
    """(the active shared-config profile, its ``services`` section's ``s3`` block) as botocore reads them
    (``AWS_PROFILE``, ``AWS_CONFIG_FILE``, ``AWS_SHARED_CREDENTIALS_FILE``); empty without a profile."""
    import botocore.session
    from botocore.exceptions import BotoCoreError

    try:
        session = botocore.session.Session()
        profile = session.get_scoped_config()
        services = session.full_config.get("services", {}).get(profile.get("services"), {})
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names no profile: say so rather than try AWS itself
        raise StorageError(f"AWS shared config: {exc}") from None
    return profile, services.get("s3", {})


def s3_endpoint_and_region(settings: S3Settings) -> tuple[str | None, str | None]:
    """Endpoint and region in botocore's order, ``data.s3_endpoint`` first. pyarrow's AWS SDK finds the keys
    itself (environment, profile, web identity/IRSA, instance role) but not the profile's ``endpoint_url``
    (pyarrow 26), and vidpred always passes pyarrow a region: so both are looked up here."""
    env = os.environ.get
    endpoint = settings.endpoint or env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL")
    region = env("AWS_REGION") or env("AWS_DEFAULT_REGION")
    if endpoint and region:
        return endpoint, region
    profile, s3_section = _profile()
    return (endpoint or s3_section.get("endpoint_url") or profile.get("endpoint_url"),
            region or profile.get("region"))


CONNECT_TIMEOUT = 3.0   # seconds a first TCP connection to the S3 endpoint may take
CONNECT_TRIES = 3       # a connection that times out may be a slow network: tried this often, said each time


def _host_port(endpoint: str | None, region: str | None) -> tuple[str, int, str]:
    """(host, port, shown) of the S3 endpoint requests go to: the configured one, else AWS's regional one."""
    if not endpoint:
        host = f"s3.{region}.amazonaws.com" if region else "s3.amazonaws.com"
        return host, 443, f"https://{host}"
    parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    return parsed.hostname or endpoint, port, endpoint


@functools.lru_cache(maxsize=16)
def check_reachable(endpoint: str | None, region: str | None, echo: Callable[[str], None] | None = None) -> None:
    """Fail in seconds, naming the endpoint, when S3 cannot be reached at all. The AWS SDK retries every
    failure the same way, so a refused connection or an unknown host (which no waiting heals) went through
    every one of data.s3_max_attempts' backoffs in silence. Those are not retried here; a connection that times
    out is retried ``CONNECT_TRIES`` times, each said on stderr. Once per endpoint and process (one TCP
    connection when it works)."""
    host, port, shown = _host_port(endpoint, region)
    where = ("data.s3_endpoint / AWS_ENDPOINT_URL" if endpoint else "the network, AWS_REGION, or set data.s3_endpoint")
    say = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    for attempt in range(1, CONNECT_TRIES + 1):
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
            return
        except socket.gaierror as exc:
            raise StorageError(f"S3 endpoint {shown}: unknown host {host!r} ({exc.strerror}); not retried, as a name "
                            f"that does not resolve does not heal by waiting: check {where}") from None
        except ConnectionRefusedError:
            raise StorageError(f"S3 endpoint {shown}: connection refused (nothing listens on {host}:{port}); not "
                            f"retried, as a refused connection does not heal by waiting: start the server, or "
                            f"check {where}") from None
        except TimeoutError:
            if attempt == CONNECT_TRIES:
                raise StorageError(f"S3 endpoint {shown}: no answer from {host}:{port} within {CONNECT_TIMEOUT:g} s, "
                                f"{CONNECT_TRIES} times; check {where}, a firewall or proxy") from None
            say(f"[vidpred] S3 endpoint {shown}: no answer within {CONNECT_TIMEOUT:g} s, retrying "
                f"({attempt + 1} of {CONNECT_TRIES})")
        except OSError as exc:  # e.g. network unreachable: no route, nothing waiting would change
            raise StorageError(f"S3 endpoint {shown}: cannot connect to {host}:{port} ({exc.strerror or exc}); "
                            f"check {where}") from None


@functools.lru_cache(maxsize=16)
def _s3(bucket: str, settings: S3Settings) -> pafs.S3FileSystem:
    endpoint, region = s3_endpoint_and_region(settings)
    check_reachable(endpoint, region)
    kwargs: dict = {"retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=settings.max_attempts)}
    if endpoint:
        kwargs["endpoint_override"] = endpoint
        # pyarrow 26 adds checksums to writes that S3-compatible servers (SeaweedFS, MinIO, Ceph) reject
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED")
    if not region and not endpoint:
        try:
            region = pafs.resolve_s3_region(bucket)
        except OSError:
            region = None
    kwargs["region"] = region or "us-east-1"
    return pafs.S3FileSystem(**kwargs)


def clear_filesystems() -> None:
    """Forget cached S3 filesystems (after the AWS environment changed)."""
    _s3.cache_clear()


def resolve(uri: str, cfg: DataConfig | None = None) -> tuple[pafs.FileSystem, str]:
    """``uri`` → (filesystem, path inside it). S3 filesystems are cached per process."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return pafs.LocalFileSystem(), uri
    if scheme == "file":
        return pafs.LocalFileSystem(), rest
    if problem := remote_uri_problem(uri):
        raise StorageError(problem)
    try:
        return _s3(rest.split("/", 1)[0], S3Settings.of(cfg)), rest
    except StorageError as exc:
        raise StorageError(f"{uri}: {exc}") from None


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def scheme_prefix(uri: str) -> str:
    """``s3://`` for a remote URI (what pyarrow leaves off the paths it lists), ``""`` for a local one."""
    scheme, sep, _ = uri.partition("://")
    return f"{scheme}://" if sep and scheme != "file" else ""


def storage_error(uri: str, exc: OSError) -> StorageError:
    """A storage failure (an ``OSError`` from pyarrow) as a StorageError that names the URI (AWS errors never
    carry the secret)."""
    text = str(exc)
    if _AUTH_ERRORS.search(text):
        return StorageError(f"{uri}: access refused by the storage ({text}); check the credentials "
                            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE) and the endpoint")
    return StorageError(f"{uri}: {text}")


class Listed(NamedTuple):
    """A file as the listing shows it: URI, size, and modification time in ns (None when the storage gives
    none). On S3 the time is the object's LastModified, which every write of the key renews."""

    uri: str
    size: int
    mtime_ns: int | None


def _local_entries(folder: str, suffixes: tuple[str, ...]) -> tuple[list[Listed], list[tuple[str, str]]]:
    """Local listing by ``os.scandir``: pyarrow's leaves out dangling links and link loops without a word."""
    files, odd = [], []
    with os.scandir(folder) as it:
        for entry in it:
            if not entry.name.lower().endswith(suffixes):
                continue
            path = entry.path
            try:
                if entry.is_dir():
                    odd.append((path, "a folder, not a file"))
                elif entry.is_file():
                    st = entry.stat()
                    files.append(Listed(path, st.st_size, st.st_mtime_ns))
                elif entry.is_symlink():
                    odd.append((path, f"a symbolic link to {os.readlink(path)!r}, which does not exist"))
                else:
                    odd.append((path, "not a regular file"))
            except OSError as exc:  # ELOOP: a link that leads back to itself
                odd.append((path, "a symbolic link loop (it leads back to itself)" if exc.errno == errno.ELOOP
                            else f"cannot be opened ({exc.strerror})"))
    return sorted(files), sorted(odd)


def list_entries(root: str, folder: str, suffixes: tuple[str, ...], cfg: DataConfig | None = None
                 ) -> tuple[list[Listed], list[tuple[str, str]]] | None:
    """(the files directly in ``root/folder`` ending in ``suffixes`` (:class:`Listed`), (URI, what it is) of
    the other entries with such a name: folders, dangling links, link loops), both sorted; None if the
    folder does not exist."""
    fs, base = resolve(root, cfg)
    where = join(base, folder)
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            kind = fs.get_file_info(where).type
            if kind == pafs.FileType.NotFound:
                return None
            if kind != pafs.FileType.Directory:
                raise StorageError(f"{join(root, folder)}: is a file, where a folder is expected")
            return _local_entries(where, suffixes)
        infos = fs.get_file_info(pafs.FileSelector(where, recursive=False, allow_not_found=True))
        if not infos and fs.get_file_info(where).type == pafs.FileType.NotFound:
            return None
    except OSError as exc:
        raise storage_error(join(root, folder), exc) from None
    prefix = scheme_prefix(root)
    named = [info for info in infos if info.path.lower().endswith(suffixes)]
    return (sorted(Listed(prefix + i.path, i.size or 0, i.mtime_ns) for i in named
                   if i.type == pafs.FileType.File),
            sorted((prefix + i.path, "a folder (prefix), not an object") for i in named if i.type != pafs.FileType.File))


def list_files(root: str, folder: str, suffixes: tuple[str, ...], cfg: DataConfig | None = None
               ) -> list[Listed] | None:
    """The files directly in ``root/folder`` ending in ``suffixes``, sorted by URI; None if the folder does not
    exist."""
    found = list_entries(root, folder, suffixes, cfg)
    return None if found is None else found[0]


def open_input(uri: str, cfg: DataConfig | None = None) -> pafs.NativeFile:
    """A seekable read-only file: from S3 each read is a ranged GET, never a copy of the object."""
    fs, path = resolve(uri, cfg)
    return fs.open_input_file(path)



def read_bytes(uri: str, cfg: DataConfig | None = None) -> bytes:
    with open_input(uri, cfg) as f:
        return f.read()


@contextlib.contextmanager
def atomic_output(uri: str, cfg: DataConfig | None = None) -> Iterator[pafs.NativeFile]:
    """A stream whose object appears only when complete: locally a temp name renamed at the end; on S3 the
    multipart upload is committed on close (a killed writer leaves nothing visible; one that raised closes,
    which pyarrow cannot abort, then deletes the object)."""
    fs, path = resolve(uri, cfg)
    if not isinstance(fs, pafs.LocalFileSystem):
        f = fs.open_output_stream(path)
        try:
            yield f
        except BaseException:
            f.close()
            fs.delete_file(path)
            raise
        f.close()
        return
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    tmp = f"{path}.part-{os.getpid()}"
    try:
        with fs.open_output_stream(tmp) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(uri: str, data: bytes, cfg: DataConfig | None = None) -> None:
    with atomic_output(uri, cfg) as f:
        f.write(data)


def exists(uri: str, cfg: DataConfig | None = None) -> bool:
    fs, path = resolve(uri, cfg)
    return fs.get_file_info(path).type == pafs.FileType.File


def storage_path(cfg: Config, kind: str = "runs", configured: str | None = None) -> str:
    """Where runs (``kind="runs"``) or Tune experiments (``"tune"``) go: ``configured`` (an experiment's own
    ``storage_path``), else ``train.storage_path``, else ``<data.cache_dir>/<kind>``. A local one is made and
    returned absolute (Ray Train and Tune want absolute paths); a remote URI is returned as it is."""
    path = configured or cfg.train.storage_path or str(Path(cfg.data.cache_dir) / kind)
    if is_remote_uri(path):
        return path
    Path(path).mkdir(parents=True, exist_ok=True)
    return str(Path(path).resolve())


def location(uri: str, cfg: DataConfig | None = None) -> tuple[str, pafs.FileSystem | None]:
    """``uri`` as Ray Train and Tune take a place: (path, pyarrow filesystem or None). A remote URI goes
    through :func:`resolve` (``data.s3_endpoint`` or ``AWS_ENDPOINT_URL``, retries, checksums fit for
    S3-compatible servers), as the data does; a local one becomes absolute, as pyarrow wants it."""
    if not is_remote_uri(uri):
        return str(Path(uri.removeprefix("file://")).expanduser().resolve()), None
    fs, path = resolve(uri, cfg)
    return path, fs


def as_uri(storage: str, path: str) -> str:
    """A path Ray gives back under ``storage`` (a checkpoint's, a trial's) as a URI: pyarrow's S3 paths come
    without their scheme, the inverse of :func:`location`."""
    return f"s3://{path.lstrip('/')}" if is_remote_uri(storage) and "://" not in path else path


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` then rename over the local ``path``: readers see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
