"""The data account of a dataset or a run: what is usable, what was skipped and why.

``survey`` lists the splits and probes every video and info JSON in a thread pool (the work is ranged reads
and header parsing, which release the GIL), giving a :class:`DataSummary`; what the root's probe index
(:mod:`vidpred.data.probe_index`) knows of unchanged files is taken from it instead, with the same account
as a probe (skips included). Training starts from it: only
usable videos enter the Ray Data pipeline, and the run fails before claiming any resource when no clip
remains. Damage only decoding reveals is sent by the decode tasks to a :class:`SkipLog` actor, merged into
the summary at the end of the run and read by the workers for their metrics.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from vidpred.config import DataConfig
from vidpred.data.prepared import read_manifest
from vidpred.data.probe import Facts, Reason, Skip, VideoInfo, clip_count, judge, probe_facts, probe_info
from vidpred.data.probe_index import MISS, ProbeIndex
from vidpred.data.sources import VIDEO_SUFFIXES, DataError, VideoFile, check_root
from vidpred.storage import Listed, atomic_output, join, list_entries, list_files

EXPECTED_SPLITS = ("train", "val")  # reported when missing; ``test`` is optional
RUN_SPLITS = ("train", "val")       # what a training run probes: it trains on train and validates on val


@dataclass
class DataSummary:
    root: str
    videos: list[VideoInfo] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    probed: int = 0            # files probed by the survey that made this account
    reused: int = 0            # files whose result came from the probe index unchanged
    index: str | None = None   # that index's URI (None: no index)

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

    def _head(self) -> dict:
        return {"root": self.root, "metrics": self.metrics(), "skipped_by_reason": self.counts()}

    def _rows(self) -> dict[str, Iterator[dict]]:
        return {"skipped": ({"file": s.uri, "split": s.split, "reason": str(s.reason), "detail": s.detail}
                            for s in self.skipped),
                "videos": (v.to_dict() for v in self.videos)}

    def to_dict(self) -> dict:
        return {**self._head(), **{key: list(rows) for key, rows in self._rows().items()}}

    def json_chunks(self) -> Iterator[str]:
        """``to_dict`` as JSON text, piece by piece, a line per skipped file and per video: written this way
        a 100,000-video account never exists whole as one dict, one string and its bytes in the driver."""
        yield json.dumps(self._head(), indent=1)[:-2]   # without the closing "\n}"
        for key, rows in self._rows().items():
            yield f',\n "{key}": ['
            for i, row in enumerate(rows):
                yield ("," if i else "") + "\n  " + json.dumps(row)
            yield "\n ]"
        yield "\n}\n"

    def to_json(self) -> str:
        return "".join(self.json_chunks())

    def write_json(self, uri: str, cfg: DataConfig | None = None, buffer: int = 1 << 20) -> None:
        """The account as a JSON file at ``uri`` (local or S3), written in ~``buffer``-byte pieces."""
        with atomic_output(uri, cfg) as f:
            pending, size = [], 0
            for chunk in self.json_chunks():
                pending.append(chunk)
                size += len(chunk)
                if size >= buffer:
                    f.write("".join(pending).encode())
                    pending, size = [], 0
            f.write("".join(pending).encode())

    def skip_table(self) -> str:
        if not self.skipped:
            return "no bad files"
        width = max(len(s.uri) for s in self.skipped)
        rows = [f"{'file':<{width}}  reason", f"{'-' * width}  ------"]
        rows += [f"{s.uri:<{width}}  {s.reason}" + (f": {s.detail}" if s.detail else "") for s in self.skipped]
        return "\n".join(rows)


@dataclass(frozen=True)
class _Job:
    """One listed file to account for: a video (``file`` set) or an info JSON."""
    listed: Listed
    file: VideoFile | None = None

    def probe(self, cfg: DataConfig) -> Facts | Skip | None:
        return probe_facts(self.file, cfg) if self.file is not None else probe_info(self.listed.uri, cfg)


def in_order(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, ahead: int) -> Iterator:
    """``pool.map(fn, items)`` with at most ``ahead`` calls submitted beyond the one awaited: ``pool.map``
    submits every item at once, and a future per file held the driver's memory for the whole survey."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def survey(cfg: DataConfig, root: str, splits: Iterable[str] = ("train",),
           expected: Iterable[str] = EXPECTED_SPLITS, progress: Callable[[int, int], None] | None = None
           ) -> DataSummary:
    """Account for every video and info JSON of ``splits``; a missing expected split folder is a skip too.
    Files the root's probe index knows unchanged are taken from it; the others are probed (``progress(done,
    total)`` counts those) and the index updated (:mod:`vidpred.data.probe_index`)."""
    check_root(root, cfg)
    splits, expected = tuple(splits), tuple(expected)
    manifest = read_manifest(root, cfg)
    if manifest is not None:
        return from_manifest(cfg, root, manifest, splits)
    summary = DataSummary(root=root)
    index = ProbeIndex.open(cfg, root)
    jobs: list[_Job] = []
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
        jobs += [_Job(f, VideoFile(f.uri, split, f.size)) for f in videos]
        jobs += [_Job(f) for f in list_files(root, f"info/{split}", (".json",), cfg) or []]
        if index is not None:
            index.listed(f"videos/{split}")
            index.listed(f"info/{split}")
    found = [MISS if index is None else index.get(job.listed) for job in jobs]
    todo = [i for i, result in enumerate(found) if result is MISS]
    with ThreadPoolExecutor(cfg.probe_threads) as pool:
        results = in_order(pool, lambda i: jobs[i].probe(cfg), todo, ahead=4 * cfg.probe_threads)
        for done, (i, result) in enumerate(zip(todo, results), 1):
            found[i] = result
            if index is not None:
                index.put(jobs[i].listed, result)
            if progress:
                progress(done, len(todo))
    for job, result in zip(jobs, found):
        result = judge(job.file, result, cfg) if job.file is not None else result
        if isinstance(result, VideoInfo):
            summary.videos.append(result)
        elif isinstance(result, Skip):
            summary.skipped.append(result)
    summary.probed, summary.reused = len(todo), len(jobs) - len(todo)
    if index is not None:
        index.save()
        summary.index = index.uri
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
    if summary.index is not None:
        echo(f"[vidpred] probe index {summary.index}: {summary.reused} files known unchanged, {summary.probed} probed")
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
    summary.write_json(uri, cfg)
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
    """The run's SkipLog actor (named, so workers find it; lives as long as the driver), pinned to the
    driver's node: anywhere else it would die with a worker node that is lost or preempted, and the run's
    account with it, although training goes on."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0)(_SkipLog)
    return actor.options(name=skip_log_name(run_name), get_if_exists=True,
                         scheduling_strategy=here).remote(summary.metrics())


def run_data_metrics(run_name: str) -> dict[str, int]:
    """The run's data metrics, for a worker's report; empty if the run has no SkipLog."""
    import ray

    try:
        return ray.get(ray.get_actor(skip_log_name(run_name)).metrics.remote(), timeout=10)
    except (ValueError, ray.exceptions.RayError):
        return {}
