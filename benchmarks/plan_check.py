"""Check the planner's activation estimate against measured CPU memory, with activation checkpointing off and on.

For each checkpointing mode and micro-batch, a fresh process runs one GAN step's passes
(``plan.step_passes``, what the planner meters on the meta device; no DeepSpeed) twice: the first allocates the gradients and warms the
kernels; then the peak-RSS mark is reset (``/proc/self/clear_refs``) and the second step's peak over the RSS
before it is the measurement: activations and backward's transient buffers, which is what the planner's
activation figure (``plan.activation_bytes``) stands for (glibc's mmap threshold is fixed, see MALLOC_ENV, so
that RSS follows the tensors alive). Prints a table and writes
benchmarks/results/plan_check.json, with the load average it ran under. Goal: within 20%.

    python benchmarks/plan_check.py --size tiny --resolution 128 --batches 1 4 8
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

from vidpred import config
from vidpred.train import plan

MEASURE = r"""
import re, sys, torch
from vidpred import config
from vidpred.model import Discriminators, Generator
from vidpred.train.plan import step_passes
torch.set_num_threads(1)
size, res, batch, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = config.load(overrides=[f"model.size={size}", f"data.height={res}", f"data.width={res}"])
torch.manual_seed(0)
g, d = Generator(cfg.model, mode), Discriminators(cfg.model, mode)
real = torch.rand(batch, cfg.data.clip_frames, 3, res, res) * 2 - 1
def kib(field):
    return int(re.search(field + r":\s+(\d+)", open("/proc/self/status").read()).group(1))
step_passes(g, d, real, cfg.data.context)  # allocates the gradients, warms the kernels
open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS mark
before = kib("VmRSS")
step_passes(g, d, real, cfg.data.context)
print((kib("VmHWM") - before) * 1024)
"""


# glibc keeps freed heap memory and raises its mmap threshold as big blocks come and go, so RSS would count
# the first step's freed tensors in the second's baseline; a fixed threshold maps every tensor above it
# on its own and gives it back on free, so RSS follows what is alive.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def measured_peak(size: str, resolution: int, batch: int, mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", MEASURE, size, str(resolution), str(batch), mode],
                         capture_output=True, text=True, timeout=1800, check=True, env={**os.environ, **MALLOC_ENV})
    return int(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--modes", nargs="+", default=list(config.CHECKPOINTING))
    args = ap.parse_args()
    cfg = config.load(overrides=[f"model.size={args.size}", f"data.height={args.resolution}",
                                 f"data.width={args.resolution}"])
    load_before = os.getloadavg()[0]
    rows = []
    for mode in args.modes:
        for b in args.batches:
            measured = measured_peak(args.size, args.resolution, b, mode)
            live = plan.profile(cfg, b, mode).activations
            estimated = plan.activation_bytes(cfg, b, mode)
            rows.append({"checkpointing": mode, "batch": b, "measured_mb": measured / 2**20,
                         "live_peak_mb": live / 2**20, "estimated_mb": estimated / 2**20,
                         "measured_over_live": measured / live, "error": (estimated - measured) / measured})
            r = rows[-1]
            print(f"{mode:<6}{b:>6}{r['measured_mb']:>14.0f}{r['live_peak_mb']:>12.0f}{r['estimated_mb']:>15.0f}"
                  f"{r['error']:>8.1%}", flush=True)
    print(f"(columns: checkpointing, micro-batch, measured MB, planner live peak MB, planner estimate MB "
          f"x{plan.ACTIVATION_SLACK:g}, error)")
    out = Path(__file__).parent / "results" / "plan_check.json"
    out.write_text(json.dumps({
        "date": datetime.date.today().isoformat(), "size": args.size, "resolution": args.resolution,
        "frames": cfg.data.clip_frames, "precision": "fp32", "activation_slack": plan.ACTIVATION_SLACK,
        "load_average_before": load_before, "load_average_after": os.getloadavg()[0], "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
