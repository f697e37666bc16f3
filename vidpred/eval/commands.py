"""``vidpred eval``: parse, then one call into :func:`vidpred.eval.evaluate.evaluate`.

Wired into the ``vidpred`` command by one line in ``vidpred/cli.py``: ``eval_commands.add_parser(sub)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vidpred.data.sources import SPLITS


def _eval(args: argparse.Namespace) -> int:
    from vidpred.eval.evaluate import evaluate

    result = evaluate(args.checkpoint, args.data, out=args.out, samples=args.samples, clips=args.clips,
                      split=args.split, seed=args.seed, batch_size=args.batch_size, device=args.device,
                      force=args.force, future=args.future, stride=args.stride)
    m, c = result.summary["model"], result.summary["copy_last"]
    print(f"[vidpred] {result.clips} clips: model PSNR {m['psnr']['mean']:.2f} dB, SSIM {m['ssim']['mean']:.4f}; "
          f"copy-last PSNR {c['psnr']['mean']:.2f} dB, SSIM {c['ssim']['mean']:.4f}")
    print((result.out / "metrics.md").read_text(), end="")
    for path in result.files:
        print(f"[vidpred] wrote {path}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="score a checkpoint against copy-last-frame; write metrics, table, PNG, GIF, plot")
    e.add_argument("--checkpoint", required=True, type=Path,
                   help="a checkpoint directory holding generator.pt and meta.json")
    e.add_argument("--data", required=True, help="dataset root (local directory or s3://...), BDD100K layout")
    e.add_argument("--out", type=Path, help="output folder (default: <run>/eval/<checkpoint name>, beside the "
                                            "checkpoint, never inside it)")
    e.add_argument("--force", action="store_true", help="replace the files of an earlier eval in --out")
    e.add_argument("--samples", type=int, default=1, help="K samples per clip; metrics are best of K (default 1)")
    e.add_argument("--clips", type=int, default=32, help="clips to score, spread over the split's videos (default 32)")
    e.add_argument("--split", default="val", choices=SPLITS, help="split folder under videos/ (default val)")
    e.add_argument("--future", type=int, help="frames to predict after the context (default: as the run trained); "
                                              "more than trained scores how far the model holds up")
    e.add_argument("--stride", type=int, help="frames between clip starts (default: context + future, clips that "
                                              "do not overlap, so a video is scored end to end)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    e.set_defaults(func=_eval)
