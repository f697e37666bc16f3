"""Activation checkpointing on CPU under DeepSpeed: peak memory and step time of the real GAN step
(``vidpred.train.step.gan_step``) with ``train.activation_checkpointing`` off / step / block at ZeRO 0 and 3,
the planner's estimate beside each.

Each layout runs in a fresh process as one gloo rank: engines built, one step to warm up (it allocates the
gradients and Adam's states), then the peak-RSS mark is reset (``/proc/self/clear_refs``) and ``--steps``
timed steps follow; their peak over the RSS before them is the step's activation memory (plus backward's
transient buffers), which the planner's activation figure stands for (glibc's mmap threshold fixed as in
plan_check.py). Prints a table and writes
benchmarks/results/ckpt_bench.json with the load average it ran under.

    python benchmarks/ckpt_bench.py --size base --resolution 128 --batch 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from vidpred import config
from vidpred.train import plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_check import MALLOC_ENV  # noqa: E402  (glibc's fixed mmap threshold: RSS follows live tensors)

RESULTS = Path(__file__).resolve().parent / "results" / "ckpt_bench.json"


def _kib(field: str) -> int:
    return int(re.search(field + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _rank(rank: int, world: int, port: int, overrides: list[str], steps: int, threads: int, out: str) -> None:
    import torch.distributed as dist

    from vidpred.model import Discriminators, Generator
    from vidpred.train.engines import build_engines
    from vidpred.train.selfcheck import init_rank
    from vidpred.train.step import gan_step

    init_rank(rank, world, port, threads)
    cfg = config.load(overrides=overrides)
    torch.manual_seed(0)
    mode = cfg.train.activation_checkpointing
    g_eng, d_eng = build_engines(Generator(cfg.model, mode), Discriminators(cfg.model, mode), cfg)
    batch = torch.randint(0, 256, (cfg.micro_batch, cfg.data.clip_frames, cfg.data.height, cfg.data.width, 3),
                          dtype=torch.uint8)
    gan_step(g_eng, d_eng, batch, cfg)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
    before = _kib("VmRSS")
    started = time.perf_counter()
    for step in range(steps):
        gan_step(g_eng, d_eng, batch, cfg, step=step + 1)
    seconds = (time.perf_counter() - started) / steps
    Path(out).write_text(json.dumps({"peak_growth": (_kib("VmHWM") - before) * 1024, "step_s": seconds}))
    dist.destroy_process_group()


def measure(overrides: list[str], steps: int, threads: int, tmp: Path) -> dict:
    from vidpred.train.selfcheck import spawn

    out = tmp / "one.json"
    spawn(_rank, 1, overrides, steps, threads, str(out))
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="base")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--stages", type=int, nargs="+", default=[0, 3])
    ap.add_argument("--modes", nargs="+", default=list(config.CHECKPOINTING))
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.update(MALLOC_ENV)  # the ranks are fresh processes: their allocator reads it at start
    base = [f"model.size={args.size}", f"data.height={args.resolution}", f"data.width={args.resolution}",
            f"data.batch_size={args.batch}", "train.num_workers=1"]
    tmp = Path(tempfile.mkdtemp(prefix="ckpt_bench-"))
    load_before = os.getloadavg()[0]
    rows = []
    print(f"{'stage':>5} {'ckpt':<6}{'measured MB':>12}{'planned MB':>11}{'error':>7}{'s/step':>8}{'x off':>7}"
          f"{'planned total GiB':>18}", flush=True)
    for stage in args.stages:
        for mode in args.modes:
            overrides = base + [f"train.zero_stage={stage}", f"train.activation_checkpointing={mode}"]
            got = measure(overrides, args.steps, args.threads, tmp)
            cfg = config.load(overrides=overrides)
            est = plan.estimate(cfg, stage, False, args.batch, 1, mode)
            off = next((r for r in rows if r["stage"] == stage and r["checkpointing"] == "off"), None)
            row = {"stage": stage, "checkpointing": mode, "measured_mb": got["peak_growth"] / 2**20,
                   "planned_activations_mb": est.activations / 2**20, "planned_total_gib": est.total / plan.GiB,
                   "step_s": got["step_s"]}
            row["error"] = (row["planned_activations_mb"] - row["measured_mb"]) / row["measured_mb"]
            if off:
                row["memory_down_x"] = off["measured_mb"] / row["measured_mb"]
                row["time_up"] = row["step_s"] / off["step_s"] - 1
            rows.append(row)
            print(f"{stage:>5} {mode:<6}{row['measured_mb']:>12.0f}{row['planned_activations_mb']:>11.0f}"
                  f"{row['error']:>7.0%}{row['step_s']:>8.2f}"
                  + (f"{row['memory_down_x']:>6.1f}x" if off else f"{'':>7}")
                  + f"{row['planned_total_gib']:>18.2f}"
                  + (f"   step time {row['time_up']:+.0%}" if off else ""), flush=True)
    RESULTS.write_text(json.dumps({
        "date": datetime.date.today().isoformat(), "size": args.size, "resolution": args.resolution,
        "batch": args.batch, "precision": "fp32", "threads": args.threads, "world": 1,
        "load_average_before": load_before, "load_average_after": os.getloadavg()[0], "rows": rows}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
