"""``vidpred data inspect URI``: what a dataset holds, per split, and which files are bad and why."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable

from vidpred.config import DataConfig
from vidpred.data.probe import VideoInfo
from vidpred.data.report import DataSummary, survey
from vidpred.data.sources import SPLITS


def inspect_dataset(cfg: DataConfig, uri: str, progress: Callable[[int, int], None] | None = None) -> DataSummary:
    """Probe every video and info file of every split (the same checks training makes)."""
    return survey(cfg, uri, splits=SPLITS, progress=progress)


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1000
    return ""


def _tally(values: Iterable[object]) -> str:
    return ", ".join(f"{v} ×{n}" for v, n in Counter(values).most_common(4)) or "-"


def _durations(videos: list[VideoInfo]) -> str:
    if not videos:
        return "-"
    d = [v.duration for v in videos]
    return f"{sum(d) / 3600:.2f} h (min {min(d):.1f} s, median {statistics.median(d):.1f} s, max {max(d):.1f} s)"


def format_report(summary: DataSummary) -> str:
    """Counts per split, durations, resolutions, fps, rotation, total size, and the bad-file table."""
    lines = [f"dataset {summary.root}"]
    header = f"{'split':<6} {'videos':>6} {'clips':>7} {'size':>9}  duration / resolution / fps / rotation"
    lines += [header, "-" * len(header)]
    for split in SPLITS:
        videos = summary.usable(split)
        if not videos:
            continue
        lines.append(f"{split:<6} {len(videos):>6} {sum(v.clips for v in videos):>7} "
                     f"{_size(sum(v.size for v in videos)):>9}  {_durations(videos)}")
        lines.append(f"{'':<32}resolution {_tally(f'{v.width}x{v.height}' for v in videos)}")
        lines.append(f"{'':<32}fps {_tally(f'{v.fps:g}' for v in videos)}; "
                     f"rotation {_tally(f'{v.rotation}°' + (' mirrored' if v.mirrored else '') for v in videos)}; codec {_tally(v.codec for v in videos)}")
    total = sum(v.size for v in summary.videos)
    lines.append(f"total: {len(summary.videos)} usable videos, {_size(total)}; "
                 f"{len(summary.skipped)} bad files" +
                 (f" ({summary.reasons()})" if summary.skipped else ""))
    lines += ["", summary.skip_table()]
    return "\n".join(lines)
