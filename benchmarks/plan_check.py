"""Check the planner's activation estimate against measured CPU memory.

For each micro-batch, one GAN step's passes run in a fresh process; the growth of peak RSS over the process's
RSS before the step is the measurement. The batch-1 figure is subtracted from both sides so what does not
scale with the batch cancels. Prints a table, writes benchmarks/results/plan_check.json. Goal: within 20%.
Measured here once (tiny model, 128x128, quiet machine): b=4 570 MB vs 543 MB estimated (-5%), b=8 1270 vs
1267 MB (0%). Under heavy load from other jobs one CI run measured 123 MB at b=4, which is why this is a
benchmark and not a test.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from vidpred import config
from vidpred.train import plan

MEASURE = r"""
import resource, sys, torch
from vidpred import config
from vidpred.model import Discriminators, Generator
torch.set_num_threads(1)
res, batch = int(sys.argv[1]), int(sys.argv[2])
cfg = config.load(overrides=[f"data.height={res}", f"data.width={res}"])
g, d, ctx = Generator(cfg.model), Discriminators(cfg.model), cfg.data.context
def step(n):  # the GAN step's passes, as vidpred.train.step runs them
    real = torch.rand(n, ctx + cfg.data.future, 3, res, res) * 2 - 1
    out = g(real, ctx)
    fake = torch.cat([real[:, :ctx], out.pred], 1)
    logits, _ = d(torch.cat([real, fake.detach()]), ctx)
    sum(l.float().mean() for l in logits).backward()
    fake_logits, _ = d(fake, ctx)
    (sum(l.float().mean() for l in fake_logits) + out.pred.mean()).backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
step(batch)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def peak_growth(resolution: int, batch: int) -> int:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(resolution), str(batch)], capture_output=True,
                         text=True, timeout=600, check=True)
    return int(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8])
    args = ap.parse_args()
    cfg = config.load(overrides=[f"data.height={args.resolution}", f"data.width={args.resolution}"])
    base_m, base_e = peak_growth(args.resolution, 1), plan.activation_bytes(cfg, 1)
    rows = []
    for b in args.batches:
        measured, estimated = peak_growth(args.resolution, b) - base_m, plan.activation_bytes(cfg, b) - base_e
        rows.append({"batch": b, "measured_mb": measured / 2**20, "estimated_mb": estimated / 2**20,
                     "error": (estimated - measured) / measured})
    print(f"{'batch':>6}{'measured MB':>14}{'estimated MB':>15}{'error':>8}")
    for r in rows:
        print(f"{r['batch']:>6}{r['measured_mb']:>14.0f}{r['estimated_mb']:>15.0f}{r['error']:>8.1%}")
    out = Path(__file__).parent / "results" / "plan_check.json"
    out.write_text(json.dumps({"resolution": args.resolution, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
