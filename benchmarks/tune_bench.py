"""ASHA against the full budget, same trials: compute used and the best objective each finds.

Both arms run the same experiment (tune/smoke.yaml's tiny model and data, the same seed, so the same sampled
weights), one with ASHA and one with FIFO (every trial trains to ``train.steps``). Compute is counted as
optimizer steps trained, trial-seconds (Tune's ``time_total_s`` summed over trials: includes each trial's Ray
Train start-up) and wall-clock. Prints a table; writes ``benchmarks/results/tune_bench.json``.

    python benchmarks/tune_bench.py [--trials 6] [--steps 18] [--val-every 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def arm(kind: str, args, cache: str) -> dict:
    """One tuning run (in this process, on a Ray of its own); its trials, compute and best."""
    from vidpred.tune import experiment
    from vidpred.tune.run import tune_experiment

    raw = yaml.safe_load((REPO / "tune" / "smoke.yaml").read_text())
    raw.update(name=f"bench-{kind}", num_samples=args.trials, max_concurrent_trials=2,
               scheduler={"kind": "asha", "grace_period": args.val_every, "reduction_factor": 3} if kind == "asha"
               else {"kind": "fifo"})
    raw["base"]["train"].update(steps=args.steps, val_every=args.val_every, checkpoint_every=args.val_every)
    exp = experiment.parse(raw, REPO / "tune")
    started = time.perf_counter()
    run = tune_experiment(exp)
    wall = time.perf_counter() - started
    trials = sorted(({"weights": {k: r.config[k] for k in exp.space}, "step": r.metrics.get("step", 0),
                      "seconds": r.metrics.get("time_total_s", 0.0), "val_score": r.metrics.get("val_score")}
                     for r in run.grid), key=lambda t: -(t["val_score"] if t["val_score"] is not None else -1e9))
    return {"scheduler": kind, "trials": trials, "wall_s": wall, "steps": sum(t["step"] for t in trials),
            "trial_s": sum(t["seconds"] for t in trials), "best": trials[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--steps", type=int, default=18)
    p.add_argument("--val-every", type=int, default=3)
    p.add_argument("--arm", choices=["asha", "fifo"], help=argparse.SUPPRESS)  # one arm, in a process of its own
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ADDRESS", "local")  # a Ray of its own per arm
    cache = os.environ.setdefault("VIDPRED_CACHE", tempfile.mkdtemp(prefix="tune-bench-"))
    if args.arm:
        Path(args.out).write_text(json.dumps(arm(args.arm, args, cache)))
        return
    results = []
    for kind in ("asha", "fifo"):
        out = Path(cache) / f"{kind}.json"
        subprocess.run([sys.executable, __file__, "--arm", kind, "--out", str(out), "--trials", str(args.trials),
                        "--steps", str(args.steps), "--val-every", str(args.val_every)], check=True)
        results.append(json.loads(out.read_text()))
    full = results[1]
    print(f"\n{args.trials} trials of the tiny model, {args.steps} steps each at most, 2 at a time, 2 CPUs\n")
    ranked = [t["weights"] for t in full["trials"]]  # full budget, best first
    print("| scheduler | steps trained | trial-seconds | wall-clock (s) | best val_score (at step) | its rank at full budget |")
    print("|---|---|---|---|---|---|")
    for r in results:
        rank = ranked.index(r["best"]["weights"]) + 1
        r["best_rank_at_full_budget"] = rank
        print(f"| {r['scheduler']} | {r['steps']} ({r['steps'] / full['steps']:.0%}) | {r['trial_s']:.0f} "
              f"({r['trial_s'] / full['trial_s']:.0%}) | {r['wall_s']:.0f} | {r['best']['val_score']:.4f} "
              f"({r['best']['step']}) | {rank} of {len(ranked)} |")
    out = REPO / "benchmarks" / "results" / "tune_bench.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
