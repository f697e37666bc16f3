"""The ``vidpred`` command: parse → config → one function of a room. No logic of its own."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vidpred import config as config_mod
from vidpred import console
from vidpred.cluster import commands as cluster_commands
from vidpred.data import commands as data_commands
from vidpred.eval import commands as eval_commands
from vidpred.train import commands as train_commands
from vidpred.tune import commands as tune_commands


def _train(args: argparse.Namespace) -> int:
    if args.resume:
        from vidpred.train.resume import resume_config

        cfg = resume_config(args.resume, args.config, args.set)
    else:
        cfg = config_mod.load(args.config, args.set)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from vidpred.eval.preview import write_preview
    from vidpred.train.launch import preview_path, train

    result = train(cfg, verbose=args.verbose)
    with result.checkpoint.as_directory() as directory:
        png = write_preview(directory, cfg, result.dataset, preview_path(cfg, result))
    for line in final_lines(result.metrics):
        print(f"[vidpred] {line}")
    print(f"[vidpred] checkpoint: {result.checkpoint_uri}")
    print(f"[vidpred] prediction: {png}")
    if cfg.train.tensorboard:  # where rank 0 writes (vidpred.train.tensorboard.logdir): the run, or the cache
        board = (Path(cfg.data.cache_dir) / "tensorboard" / result.name if config_mod.is_remote_uri(result.run_dir)
                 else f"{result.run_dir}/tensorboard")
        print(f"[vidpred] TensorBoard: tensorboard --logdir {board}")
    print(f"[vidpred] Ray's own output: {result.log_file}")
    return 0


DONE_KEYS = ("g_total", "rec", "kl", "adv", "d_loss", "nonfinite_steps", "data_videos", "data_skipped",
             "val_psnr", "val_ssim")


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e9 else f"{value:.4f}"


def final_lines(metrics: dict) -> list[str]:
    """The end of a run in two lines: the losses that matter, the data and non-finite counts, and the last
    validation beside copy-last (every metric is in TensorBoard and the checkpoint's report)."""
    shown = " ".join(f"{k}={_shown(metrics[k])}" for k in DONE_KEYS if isinstance(metrics.get(k), (int, float)))
    lines = [f"done: {metrics.get('step')} steps, {shown}"]
    if isinstance(metrics.get("val_psnr"), float):
        lines.append(f"validation: PSNR {metrics['val_psnr']:.2f} dB (copy-last {metrics['val_copy_last_psnr']:.2f}), "
                     f"SSIM {metrics['val_ssim']:.4f} (copy-last {metrics['val_copy_last_ssim']:.4f})")
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidpred", description="Dashcam video prediction on Ray + DeepSpeed.")
    p.add_argument("--debug", action="store_true",
                   help=f"on an error, show the Python traceback too (anywhere on the line; or {console.DEBUG_ENV}=1)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train VPGAN (default: synthetic dashcam clips, local Ray)")
    t.add_argument("--config", type=Path, help="YAML with sections data, model, loss, train")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one value, e.g. --set train.steps=100 (repeatable)")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.add_argument("--verbose", action="store_true",
                   help="show Ray's, Ray Data's and DeepSpeed's own output live (always in <run>/logs/ray.log)")
    t.add_argument("--resume", metavar="RUN",
                   help="continue a run from its latest checkpoint: a run name under train.storage_path, a run "
                        "directory or URI; its config is the base, --config/--set go on top (e.g. train.steps)")
    t.set_defaults(func=_train)

    train_commands.add_parser(sub)
    data_commands.add_parser(sub)
    eval_commands.add_parser(sub)
    cluster_commands.add_parser(sub)
    tune_commands.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command inside the error boundary (:func:`vidpred.console.guarded`): an expected failure is
    one line ``vidpred: error: ...`` and exit status 2."""
    debug, argv = console.debug_wanted(sys.argv[1:] if argv is None else list(argv))
    args = parser().parse_args(argv)
    return console.guarded(lambda: args.func(args), debug)
