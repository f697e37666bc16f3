"""The ``vidpred`` command: parse → config → one function of a room. No logic of its own."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vidpred import config as config_mod
from vidpred.data.sources import DataError


def _train(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config, args.set)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from vidpred.eval.preview import write_preview
    from vidpred.train.launch import preview_path, train

    result = train(cfg)
    with result.checkpoint.as_directory() as directory:
        png = write_preview(directory, cfg, result.dataset, preview_path(cfg, result))
    losses = " ".join(f"{k}={v:.4f}" for k, v in result.metrics.items() if k != "step")
    print(f"[vidpred] done: {result.metrics.get('step')} steps, {losses}")
    print(f"[vidpred] checkpoint: {result.checkpoint_uri}")
    print(f"[vidpred] prediction: {png}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from vidpred.data.synth import parse_size, synth_dataset

    try:
        size = parse_size(args.size)
    except ValueError as exc:
        raise config_mod.ConfigError(f"--size {args.size!r}: {exc}") from None
    paths = synth_dataset(args.out, clips=args.clips, seconds=args.seconds, fps=args.fps,
                          size=size, seed=args.seed, progress=print)
    print(f"wrote {len(paths)} videos under {Path(args.out) / 'videos'}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidpred", description="Dashcam video prediction on Ray + DeepSpeed.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train VPGAN (default: synthetic dashcam clips, local Ray)")
    t.add_argument("--config", type=Path, help="YAML with sections data, model, loss, train")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one value, e.g. --set train.steps=100 (repeatable)")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.set_defaults(func=_train)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    s = data.add_parser("synth", help="write synthetic dashcam clips in BDD100K layout")
    s.add_argument("out", help="output directory (gets videos/train and videos/val)")
    s.add_argument("--clips", type=int, default=8, help="train clips (val gets a quarter, at least one)")
    s.add_argument("--seconds", type=float, default=4.0)
    s.add_argument("--fps", type=int, default=30)
    s.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_synth)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (config_mod.ConfigError, DataError) as exc:
        print(f"vidpred: error: {exc}", file=sys.stderr)
        return 2
