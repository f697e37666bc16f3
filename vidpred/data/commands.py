"""``vidpred data {synth,upload,inspect,prepare}``: parse, then one call into the data room.

Wired into the ``vidpred`` command by one line in ``vidpred/cli.py``: ``data_commands.add_parser(sub)``.
``upload``, ``inspect`` and ``prepare`` read the ``data`` section of the usual config (``--config``,
``--set data.key=value``): the S3 endpoint, and for inspect/prepare the training fps, size and clip length.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vidpred import config as config_mod
from vidpred import console


def _data_config(args: argparse.Namespace) -> config_mod.DataConfig:
    return config_mod.load(args.config, args.set).data


def _synth(args: argparse.Namespace) -> int:
    from vidpred.data.synth import check_arguments, parse_size, synth_dataset

    try:
        size = parse_size(args.size)
        check_arguments(args.clips, args.seconds, args.fps, size, args.seed)
    except ValueError as exc:
        raise config_mod.ConfigError(f"data synth: --{exc}") from None
    if problem := config_mod.folder_problem(args.out):
        raise config_mod.ConfigError(f"data synth OUT {args.out!r}: {problem}")
    paths = synth_dataset(args.out, clips=args.clips, seconds=args.seconds, fps=args.fps,
                          size=size, seed=args.seed, progress=print)
    print(f"wrote {len(paths)} videos under {Path(args.out) / 'videos'}")
    return 0


def _upload(args: argparse.Namespace) -> int:
    from vidpred.data.upload import MIB, upload

    result = upload(args.local, args.dest, _data_config(args), workers=args.workers,
                    part_size=args.part_size_mb * MIB, progress=not args.quiet)
    print(f"[vidpred] {result.uploaded} uploaded ({result.bytes_sent / MIB:.1f} MiB), "
          f"{result.skipped} already there and identical → {args.dest}" +
          (f"; {result.aborted} unfinished multipart uploads of earlier runs aborted" if result.aborted else ""))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from vidpred.data.inspect import format_report, inspect_dataset

    def progress(done: int, total: int) -> None:
        if done == total or done % 200 == 0:
            print(f"[vidpred] probed {done}/{total} files", file=sys.stderr, flush=True)

    json_out = console.output_file(args.json, args.force, "--json") if args.json else None
    summary = inspect_dataset(_data_config(args), args.uri, progress=progress)
    print(format_report(summary))
    if json_out is not None:
        summary.write_json(str(json_out))  # atomic: all of it or nothing
        print(f"[vidpred] wrote {json_out}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from vidpred.data.prepare import prepare

    manifest = prepare(_data_config(args), args.src, args.dst, verbose=args.verbose)
    files = sum(len(v) for v in manifest["splits"].values())
    print(f"[vidpred] prepared {files} videos at {manifest['fps']:g} fps {manifest['width']}x{manifest['height']}"
          f" → {args.dst} ({len(manifest['skipped'])} skipped); train with --set data.uri={args.dst}")
    return 0


def _with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--config", type=Path, help="YAML config; its data section is used")
    p.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE",
                   help="override a config value, e.g. --set data.s3_endpoint=http://127.0.0.1:8333")
    return p


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)

    s = data.add_parser("synth", help="write synthetic dashcam clips in BDD100K layout")
    s.add_argument("out", help="output directory (gets videos/train and videos/val)")
    s.add_argument("--clips", type=int, default=8, help="train clips (val gets a quarter, at least one)")
    s.add_argument("--seconds", type=float, default=4.0)
    s.add_argument("--fps", type=int, default=30)
    s.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_synth)

    u = _with_config(data.add_parser("upload", help="copy a local tree to s3://bucket/prefix (parallel, resumable)"))
    u.add_argument("local", help="local directory, e.g. a BDD100K tree")
    u.add_argument("dest", help="s3://bucket/prefix")
    u.add_argument("--workers", type=int, default=8, help="files uploaded at once (default 8)")
    u.add_argument("--part-size-mb", type=int, default=16, help="multipart part size in MiB (default 16, min 5)")
    u.add_argument("--quiet", action="store_true", help="no progress bar")
    u.set_defaults(func=_upload)

    i = _with_config(data.add_parser("inspect", help="counts, durations, resolutions, fps, rotation, bad files"))
    i.add_argument("uri", help="dataset root: local directory or s3://bucket/prefix")
    i.add_argument("--json", help="also write the full account (every file) as JSON here")
    i.add_argument("--force", action="store_true", help="replace the --json file if it exists")
    i.set_defaults(func=_inspect)

    r = _with_config(data.add_parser("prepare", help="decode once into a prepared-clip cache (a Ray Data job)"))
    r.add_argument("src", help="raw dataset root (local or s3://)")
    r.add_argument("dst", help="prepared cache root (local or s3://); rerun to resume")
    r.add_argument("--verbose", action="store_true", help="show Ray's own output live (always in a log file)")
    r.set_defaults(func=_prepare)
