"""The data account of a dataset or a run: what is usable, what was skipped and why.

``survey`` lists the splits and probes every video and info JSON in a thread pool (the work is ranged reads
and header parsing, which release the GIL), giving a :class:`DataSummary`. Training starts from it: only
usable videos enter the Ray Data pipeline, and the run fails before claiming any resource when no clip
remains. Damage only decoding reveals is sent by the decode tasks to a :class:`SkipLog` actor, merged into
the summary at the end of the run and read by the workers for their metrics.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from vidpred.config import DataConfig
from vidpred.data.prepared import read_manifest
from vidpred.data.probe import Reason, Skip, VideoInfo, clip_count, probe_info, probe_video
from vidpred.data.sources import (VIDEO_SUFFIXES, DataError, VideoFile, check_root, join, list_entries, list_files,
                                  write_bytes)

EXPECTED_SPLITS = ("train", "val")  # reported when missing; ``test`` is optional
RUN_SPLITS = ("train", "val")       # what a training run probes: it trains on train and validates on val


@dataclass
class DataSummary:
    root: str
    videos: list[VideoInfo] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    def usable(self, split: str) -> list[VideoInfo]:
        bad = {s.uri for s in self.skipped}
        return [v for v in self.videos if v.split == split and v.uri not in bad]

    def add_skips(self, skips: Iterable[Skip]) -> None:
        known = {s.uri for s in self.skipped}
        for skip in skips:
            if skip.uri not in known:
                known.add(skip.uri)
                self.skipped.append(skip)

    def counts(self, split: str | None = None) -> dict[str, int]:
        """Skipped files per reason, of one split or (None) of all."""
        return dict(sorted(Counter(str(s.reason) for s in self.skipped if split in (None, s.split)).items()))

    def reasons(self, split: str | None = None) -> str:
        """``2 truncated, 1 not a video``; empty when nothing was skipped."""
        return ", ".join(f"{n} {r}" for r, n in self.counts(split).items())

    def split_line(self, split: str) -> str:
        """``train: 3 usable videos (~31 clips), 2 skipped (1 not a video, 1 truncated)``."""
        usable, why = self.usable(split), self.reasons(split)
        return (f"{split}: {len(usable)} usable videos (~{sum(v.clips for v in usable)} clips), "
                f"{sum(self.counts(split).values())} skipped" + (f" ({why})" if why else ""))

    def metrics(self) -> dict[str, int]:
        """Flat numbers for a run's metrics: usable videos and clips, skipped files in all and per reason."""
        out = {"data_videos": len(self.videos), "data_clips_estimated": sum(v.clips for v in self.videos),
               "data_skipped": len(self.skipped)}
        out.update({f"data_skipped_{r.replace(' ', '_')}": n for r, n in self.counts().items()})
        return out

    def require_clips(self, split: str) -> list[VideoInfo]:
        usable = self.usable(split)
        if not usable:
            why = self.reasons(split) or "no video files"
            raise DataError(f"no usable clip under {join(self.root, 'videos', split)} ({why}); "
                            f"every file was skipped: run `vidpred data inspect {self.root}` for the list")
        return usable

    def to_dict(self) -> dict:
        return {"root": self.root, "metrics": self.metrics(), "skipped_by_reason": self.counts(),
                "skipped": [{"file": s.uri, "split": s.split, "reason": str(s.reason), "detail": s.detail}
                            for s in self.skipped],
                "videos": [v.to_dict() for v in self.videos]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def skip_table(self) -> str:
        if not self.skipped:
            return "no bad files"
        width = max(len(s.uri) for s in self.skipped)
        rows = [f"{'file':<{width}}  reason", f"{'-' * width}  ------"]
        rows += [f"{s.uri:<{width}}  {s.reason}" + (f": {s.detail}" if s.detail else "") for s in self.skipped]
        return "\n".join(rows)


def survey(cfg: DataConfig, root: str, splits: Iterable[str] = ("train",),
           expected: Iterable[str] = EXPECTED_SPLITS, progress: Callable[[int, int], None] | None = None
           ) -> DataSummary:
    """Probe every video and info JSON of ``splits``; a missing expected split folder is a skip too."""
    check_root(root, cfg)
    splits, expected = tuple(splits), tuple(expected)
    manifest = read_manifest(root, cfg)
    if manifest is not None:
        return from_manifest(cfg, root, manifest, splits)
    summary = DataSummary(root=root)
    jobs: list[Callable[[], VideoInfo | Skip | None]] = []
    for split in dict.fromkeys([*splits, *expected]):
        listed = list_entries(root, f"videos/{split}", VIDEO_SUFFIXES, cfg)
        if listed is None:
            if split in expected:
                summary.skipped.append(Skip(join(root, "videos", split), Reason.MISSING_SPLIT))
            continue
        if split not in splits:
            continue
        videos, odd = listed
        summary.skipped += [Skip(uri, Reason.NOT_FILE, what) for uri, what in odd]  # said, not dropped
        files = [VideoFile(uri, split, size) for uri, size in videos]
        jobs += [lambda f=f: probe_video(f, cfg) for f in files]
        infos = list_files(root, f"info/{split}", (".json",), cfg) or []
        jobs += [lambda uri=uri: probe_info(uri, cfg) for uri, _ in infos]
    with ThreadPoolExecutor(cfg.probe_threads) as pool:
        for done, result in enumerate(pool.map(lambda job: job(), jobs), 1):
            if isinstance(result, VideoInfo):
                summary.videos.append(result)
            elif isinstance(result, Skip):
                summary.skipped.append(result)
            if progress:
                progress(done, len(jobs))
    return summary


def from_manifest(cfg: DataConfig, root: str, manifest: dict, splits: Iterable[str]) -> DataSummary:
    """A prepared tree's account: its files (checked when prepared) and the skips found then."""
    summary = DataSummary(root=root, skipped=[Skip(s["file"], Reason(s["reason"]), s["detail"])
                                              for s in manifest["skipped"]])
    for split in splits:
        for entry in manifest["splits"].get(split, []):
            info = VideoInfo(uri=join(root, entry["file"]), split=split, size=entry["size"], codec="prepared",
                             width=cfg.width, height=cfg.height, fps=cfg.fps, duration=entry["frames"] / cfg.fps,
                             rotation=0, clips=clip_count(entry["frames"], cfg))
            if info.clips:
                summary.videos.append(info)
            else:
                summary.skipped.append(Skip(info.uri, Reason.TOO_SHORT, f"{entry['frames']} frames"))
    return summary


def training_summary(cfg: DataConfig, root: str, echo: Callable[[str], None] = print, shown: int = 20
                     ) -> DataSummary:
    """Survey the train and val splits for a run and print their account. DataError when train has no usable
    clip; a warning when val has none (validation is optional: the run trains without it)."""
    summary = survey(cfg, root, splits=RUN_SPLITS)
    summary.require_clips("train")
    for split in RUN_SPLITS:
        echo(f"[vidpred] data {summary.split_line(split)}")
    if not summary.usable("val"):
        echo(f"[vidpred] WARNING: no usable clip under {join(root, 'videos', 'val')}: training without validation")
    skipped = summary.skipped
    for s in skipped[:shown]:
        echo(f"[vidpred]   skipped {s.uri}: {s.reason}" + (f" ({s.detail})" if s.detail else ""))
    if len(skipped) > shown:
        echo(f"[vidpred]   ... {len(skipped) - shown} more in the run's data_summary.json")
    return summary


def finish_run_summary(summary: DataSummary, skip_log, run_dir: str, cfg: DataConfig,
                       echo: Callable[[str], None] = print) -> str:
    """Merge the skips found while decoding and write ``<run_dir>/data_summary.json``; returns its URI."""
    import ray

    late = ray.get(skip_log.all.remote())
    summary.add_skips(late)
    uri = join(run_dir, "data_summary.json")
    write_bytes(uri, summary.to_json().encode(), cfg)
    echo(f"[vidpred] data summary: {uri} ({len(summary.skipped)} files skipped, {len(late)} of them while decoding)")
    return uri


class _SkipLog:
    """Skips found while decoding, first report per file wins (a retried task reports again)."""

    def __init__(self, base: dict[str, int]):
        self.base = base
        self.skips: dict[str, Skip] = {}

    def add(self, skip: Skip) -> None:
        self.skips.setdefault(skip.uri, skip)

    def all(self) -> list[Skip]:
        return list(self.skips.values())

    def metrics(self) -> dict[str, int]:
        out = dict(self.base)
        out["data_skipped"] = out.get("data_skipped", 0) + len(self.skips)
        out["data_skipped_while_decoding"] = len(self.skips)
        return out


def skip_log_name(run_name: str) -> str:
    return f"vidpred-skips-{run_name}"


def start_skip_log(run_name: str, summary: DataSummary):
    """The run's SkipLog actor (named, so workers find it; lives as long as the driver)."""
    import ray

    actor = ray.remote(num_cpus=0)(_SkipLog)
    return actor.options(name=skip_log_name(run_name), get_if_exists=True).remote(summary.metrics())


def run_data_metrics(run_name: str) -> dict[str, int]:
    """The run's data metrics, for a worker's report; empty if the run has no SkipLog."""
    import ray

    try:
        return ray.get(ray.get_actor(skip_log_name(run_name)).metrics.remote(), timeout=10)
    except (ValueError, ray.exceptions.RayError):
        return {}
