"""``vidpred data prepare SRC DST``: decode every source video once into the prepared-clip cache.

A Ray Data job (one map task per video, so it spreads over a cluster's CPUs): survey SRC (the same probe
training runs: bad files are skipped and listed), then each usable video that DST does not already hold
complete is decoded at the configured fps and size and written as one Parquet file (see
:mod:`vidpred.data.prepared`). Restartable: a finished file is recognised by its readable footer and
skipped; ``prepared.json`` is written last, so a tree without it is a job still to finish. Train on it with
``--set data.uri=DST`` and the same ``data.fps/height/width``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vidpred import raycompat
from vidpred.config import DataConfig, folder_problem, is_remote_uri
from vidpred.console import RayOutput
from vidpred.data.pipeline import frames_of
from vidpred.data.prepared import MANIFEST, frame_count, manifest_for, target_uri, write_frames
from vidpred.data.probe import Reason, Skip, VideoInfo, clip_count
from vidpred.data.report import survey
from vidpred.data.sources import SPLITS, DataError
from vidpred.storage import join, resolve, write_bytes


class PrepareOne:
    """Ray Data ``map``: decode one video into its prepared file; errors come back as a row, never raised."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        try:
            write_frames(row["out"], frames_of(row["uri"], self.cfg), self.cfg)
            frames, size = finished(row["out"], self.cfg) or (0, 0)
            return {**row, "frames": frames, "size": size, "error": ""}
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the job
            return {**row, "frames": 0, "size": 0, "error": f"{type(exc).__name__}: {exc}"}


def finished(uri: str, cfg: DataConfig) -> tuple[int, int] | None:
    """(frames, bytes) of a complete prepared file, or None if absent or incomplete."""
    fs, path = resolve(uri, cfg)
    try:
        size = fs.get_file_info(path).size
        return (frame_count(uri, cfg), size or 0) if size else None
    except (OSError, ValueError):  # missing, or no Parquet footer (an interrupted writer)
        return None


def _run_job(cfg: DataConfig, rows: list[dict], echo: Callable[[str], None], verbose: bool = False) -> list[dict]:
    """The Ray Data job; Ray's own output goes to ``<cache_dir>/logs/prepare-<time>/ray.log`` (``verbose``:
    shown live too)."""
    import ray.data

    logs = Path(cfg.cache_dir) / "logs" / time.strftime("prepare-%Y%m%d-%H%M%S") / "ray.log"
    with RayOutput(logs, verbose) as output:
        raycompat.init(logging_level="WARNING")  # joins RAY_ADDRESS, or starts one on 127.0.0.1
        output.attach()
        echo(f"[vidpred] Ray's own output: {logs}" + ("" if verbose else " (--verbose shows it here)"))
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map(PrepareOne(cfg))
        results = []
        for row in ds.iter_rows():
            results.append(row)
            echo(f"[vidpred] prepared {len(results)}/{len(rows)} {row['uri']}" + (f": {row['error']}" if row["error"]
                                                                                  else f" ({row['frames']} frames)"))
    return results


def _same_place(a: str, b: str) -> bool:
    """Whether two dataset URIs name the same folder (local paths compared resolved)."""
    if is_remote_uri(a) or is_remote_uri(b):
        return a.rstrip("/") == b.rstrip("/")
    return Path(a.removeprefix("file://")).expanduser().resolve() == Path(b.removeprefix("file://")).expanduser().resolve()


def prepare(cfg: DataConfig, src: str, dst: str, echo: Callable[[str], None] = print, verbose: bool = False) -> dict:
    """Prepare every split of ``src`` into ``dst``; returns the manifest written to ``dst/prepared.json``."""
    resolve(dst, cfg)  # a remote DST of a form vidpred cannot use fails here, before any decoding
    if not is_remote_uri(dst) and (problem := folder_problem(dst.removeprefix("file://"))):
        raise DataError(f"DST {dst}: {problem}")
    if _same_place(src, dst):
        raise DataError(f"DST {dst}: is SRC itself; the prepared files and prepared.json would go into the raw "
                        "dataset (which would then read as a prepared one): choose another folder")
    summary = survey(cfg, src, splits=SPLITS)
    videos: list[VideoInfo] = summary.videos
    with ThreadPoolExecutor(cfg.probe_threads) as pool:
        done = dict(zip([v.uri for v in videos],
                        pool.map(lambda v: finished(target_uri(dst, v.split, v.uri), cfg), videos)))
    todo = [{"uri": v.uri, "out": target_uri(dst, v.split, v.uri)} for v in videos if done[v.uri] is None]
    echo(f"[vidpred] {len(videos)} usable videos in {src} ({len(videos) - len(todo)} already prepared), "
         f"{len(summary.skipped)} skipped")
    for row in _run_job(cfg, todo, echo, verbose) if todo else []:
        if row["error"]:
            summary.add_skips([Skip(row["uri"], Reason.DECODE, row["error"])])
        else:
            done[row["uri"]] = (row["frames"], row["size"])
    bad = {s.uri for s in summary.skipped}
    files: dict[str, list[dict]] = {}
    for v in videos:
        if v.uri in bad or done[v.uri] is None:
            continue
        frames, size = done[v.uri]
        if clip_count(frames, cfg) == 0:
            summary.add_skips([Skip(v.uri, Reason.TOO_SHORT, f"decoded {frames} frames")])
            continue
        rel = target_uri("", v.split, v.uri).lstrip("/")
        files.setdefault(v.split, []).append({"file": rel, "source": v.uri, "frames": frames, "size": size})
    skipped = [{"file": s.uri, "reason": str(s.reason), "detail": s.detail} for s in summary.skipped]
    manifest = manifest_for(cfg, src, files, skipped)
    write_bytes(join(dst, MANIFEST), json.dumps(manifest, indent=1).encode(), cfg)
    return manifest
