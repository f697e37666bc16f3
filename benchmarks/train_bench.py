"""Training throughput through the path users run: ``vidpred train`` itself against the plain GAN step.

(a) the ceiling: the GAN step (``vidpred.train.step.gan_step``) in this process on plain torch engines
    (``local_engines``: no Ray, no DeepSpeed, no data pipeline), one torch thread, random uint8 clips of the
    run's shape; clips/s over the timed steps after warm-up.
(a2) two such processes at once, one per core: what two cores give the plain step when both are busy (shared
    caches, memory bandwidth, clock): separates the machine's own scaling from what Ray and DeepSpeed cost.
(b) ``python -m vidpred train`` as a subprocess, exactly as the CLI builds it (TorchTrainer, Ray Data over a
    prepared 64×64 clip cache that the bench makes first, DeepSpeed engines), for 1 and 2 workers at ZeRO 0,
    2 and 3, same model, batch and resolution as (a). Its progress lines give each logging interval's rate;
    steady state is the median interval after ``--warmup-intervals`` (checkpoint and validation only at the
    last step, so no interval carries them). Start-up is reported apart: seconds from the command's start
    to the progress line of its first optimizer step, as a user sees it.
(c) the non-finite guard: the flag all-reduce ``all_finite`` does twice per step, timed on 2 gloo ranks.

Goals on a 2-core machine: 2 workers ≥ 0.9 × 2 × (a), 1 worker ≥ 0.9 × (a). A ``base``-model row does the
same at the ``base`` size. Writes benchmarks/results/train_bench.json.

    python benchmarks/train_bench.py [--steps 200] [--log-every 20] [--base-steps 60] [--only tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "train_bench.json"
FIRST = re.compile(r"step (\d+)/\d+ .*\(first step ([\d.]+) s\)")
RATE = re.compile(r"step (\d+)/\d+ .*\(([\d.]+) steps/s, ([\d.]+) clips/s")
SHAPE = ["--set", "data.height=64", "--set", "data.width=64", "--set", "data.batch_size=4"]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200, help="optimizer steps per tiny-model run")
    p.add_argument("--log-every", type=int, default=20, help="train.log_every of the runs (one interval)")
    p.add_argument("--warmup-intervals", type=int, default=2, help="intervals left out of the steady state")
    p.add_argument("--base-steps", type=int, default=12, help="steps of the base-model runs (~13 s each on 2 cores)")
    p.add_argument("--base-log-every", type=int, default=3)
    p.add_argument("--ceiling-steps", type=int, default=60, help="timed steps of (a), after 5 warm-up steps")
    p.add_argument("--only", choices=["tiny", "base"], help="one model size only")
    p.add_argument("--layouts", default="1:0,1:2,1:3,2:0,2:2,2:3,2:2:raw",
                   help="WORKERS:ZERO[:raw] of the tiny rows; raw: from the raw videos, decoded while training")
    p.add_argument("--base-layouts", default="2:2", help="WORKERS:ZERO pairs of the base rows")
    p.add_argument("--workdir", type=Path, help="where the clip cache and runs go (default: a temp dir)")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args()


def config_for(size: str):
    from vidpred import config

    return config.load(overrides=[f"model.size={size}", *[s for s in SHAPE if s != "--set"]])


def ceiling(size: str, steps: int, warmup: int = 5) -> dict:
    """(a): clips/s of the plain GAN step, one torch thread."""
    from vidpred.model import Discriminators, Generator
    from vidpred.train.engines import local_engines
    from vidpred.train.step import gan_step

    cfg = config_for(size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        g_eng, d_eng = local_engines(Generator(cfg.model), Discriminators(cfg.model), cfg)
        shape = (cfg.data.batch_size, cfg.data.clip_frames, cfg.data.height, cfg.data.width, 3)
        batches = [torch.randint(0, 256, shape, dtype=torch.uint8) for _ in range(8)]
        times = []
        for step in range(warmup + steps):
            start = time.perf_counter()
            gan_step(g_eng, d_eng, batches[step % len(batches)], cfg, step=step)["g_total"].item()
            times.append(time.perf_counter() - start)
        timed = times[warmup:]
        return {"model": size, "steps": steps, "clips_per_s": cfg.data.batch_size * len(timed) / sum(timed),
                "median_step_s": statistics.median(timed)}
    finally:
        torch.set_num_threads(threads)


def _ceiling_job(job: tuple[str, int]) -> dict:
    return ceiling(*job)


def ceiling_pair(size: str, steps: int) -> dict:
    """(a2): two (a) processes at the same time; their clips/s summed."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(2) as pool:
        runs = pool.map(_ceiling_job, [(size, steps)] * 2)
    return {"model": size, "clips_per_s": sum(r["clips_per_s"] for r in runs), "per_process": runs}


def _guard_rank(rank: int, world: int, port: int, calls: int, out: str) -> None:
    import torch.distributed as dist

    from vidpred.train.selfcheck import init_rank
    from vidpred.train.step import all_finite

    init_rank(rank, world, port)
    loss = torch.tensor(1.0)
    for _ in range(50):
        all_finite(loss)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(calls):
        all_finite(loss)
    seconds = time.perf_counter() - start
    if rank == 0:
        Path(out).write_text(json.dumps({"calls": calls, "us_per_call": 1e6 * seconds / calls}))
    dist.barrier()
    dist.destroy_process_group()


def guard(calls: int = 2000) -> dict:
    """(c): the non-finite guard's flag all-reduce on 2 gloo ranks (µs per call; a step makes two)."""
    from vidpred.train.selfcheck import spawn

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "guard.json")
        spawn(_guard_rank, 2, calls, out)
        return json.loads(Path(out).read_text())


def cli(args: list[str], env: dict, timeout: float = 1800) -> tuple[int, list[tuple[float, str]]]:
    """Run ``python -m vidpred ARGS``; (exit status, [(seconds since start, line), ...])."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vidpred", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    for line in proc.stdout:
        lines.append((time.perf_counter() - start, line.rstrip("\n")))
    proc.wait(timeout=timeout)
    return proc.returncode, lines


def clip_cache(workdir: Path, env: dict) -> Path:
    """A prepared 64×64 clip cache of 16 + 4 synthetic 8-s 320×180 videos (made once per workdir); the raw
    videos are beside it, in ``raw``."""
    raw, prep = workdir / "raw", workdir / "prep"
    if not (prep / "prepared.json").exists():
        for args in (["data", "synth", str(raw), "--clips", "16", "--seconds", "8", "--size", "320x180"],
                     ["data", "prepare", str(raw), str(prep), *SHAPE[:4]]):
            rc, lines = cli(args, env)
            if rc:
                sys.exit("\n".join(line for _, line in lines[-40:]))
    return prep


def train_row(size: str, workers: int, zero: int, steps: int, log_every: int, warmup: int, data: Path,
              env: dict, storage: Path | str, extra: list[str] | tuple[str, ...] = ()) -> dict:
    """(b): one ``vidpred train`` run on ``data`` (prepared or raw); its steady-state rate and its start-up.
    ``extra``: more ``--set`` arguments, after the row's own (a later one wins)."""
    name = f"{size}-w{workers}-z{zero}-{int(time.time())}"
    args = ["train", *SHAPE, "--set", f"data.uri={data}", "--set", f"model.size={size}",
            "--set", f"train.num_workers={workers}", "--set", f"train.zero_stage={zero}",
            "--set", f"train.steps={steps}", "--set", f"train.log_every={log_every}",
            "--set", f"train.checkpoint_every={steps}", "--set", f"train.val_every={steps}",
            "--set", f"train.storage_path={storage}", "--set", f"train.name={name}", *extra]
    started = time.perf_counter()
    rc, lines = cli(args, env)
    wall = time.perf_counter() - started
    if rc:
        sys.exit(f"vidpred train exited {rc}:\n" + "\n".join(line for _, line in lines[-60:]))
    first = next(((t, float(m.group(2))) for t, line in lines if (m := FIRST.search(line))), (None, None))
    rates = [(int(m.group(1)), float(m.group(2)), float(m.group(3))) for _, line in lines if (m := RATE.search(line))]
    steady = rates[warmup:] or rates
    return {"model": size, "workers": workers, "zero": zero, "data": "raw" if data.name == "raw" else "prepared",
            "steps": steps, "log_every": log_every, "name": name, "extra": list(extra),
            "intervals": [{"step": s, "steps_per_s": r, "clips_per_s": c} for s, r, c in rates],
            "steady_clips_per_s": statistics.median(c for _, _, c in steady),
            "steady_steps_per_s": statistics.median(r for _, r, _ in steady),
            "to_first_step_s": first[0], "first_step_s": first[1], "command_s": wall}


def table(result: dict) -> str:
    rows = ["| model | workers | ZeRO | steady clips/s | steps/s | vs goal ceiling | command → first step s | first step s |",
            "|---|---|---|---|---|---|---|---|"]
    ceilings = {c["model"]: c["clips_per_s"] for c in result["ceiling"]}
    for c in result["ceiling"]:
        rows.append(f"| {c['model']} | (a) 1 process, 1 thread | — | {c['clips_per_s']:.2f} | "
                    f"{c['clips_per_s'] / 4:.2f} | 1.00 | — | — |")
    for r in result["train"]:
        ideal = ceilings[r["model"]] * r["workers"]
        rows.append(f"| {r['model']}{' (raw video)' if r['data'] == 'raw' else ''} | {r['workers']} | {r['zero']} | {r['steady_clips_per_s']:.2f} | "
                    f"{r['steady_steps_per_s']:.3f} | {r['steady_clips_per_s'] / ideal:.2f} | "
                    f"{r['to_first_step_s']:.1f} | {r['first_step_s']:.2f} |")
    g = result["guard"]
    for c in result["ceiling_pair"]:
        rows.append(f"| {c['model']} | (a2) 2 processes at once, 1 thread each | — | {c['clips_per_s']:.1f} | "
                    f"{c['clips_per_s'] / 8:.2f} | {c['clips_per_s'] / (2 * ceilings[c['model']]):.2f} | — | — |")
    rows.append(f"\n(c) non-finite guard: {g['us_per_call']:.0f} µs per flag all-reduce on 2 gloo ranks, two per step")
    return "\n".join(rows)


def workspace(workdir: Path | None, prefix: str) -> tuple[Path, dict, Path]:
    """(the work folder, made if missing, or a fresh temp one; the environment of the runs: a local Ray of
    their own, vidpred's cache inside the folder; the prepared clip cache in it)."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix=prefix))
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, VIDPRED_CACHE=str(workdir / "cache"), RAY_ADDRESS="local", PYTHONUNBUFFERED="1",
               RAY_USAGE_STATS_ENABLED="0")
    return workdir, env, clip_cache(workdir, env)


def main() -> None:
    args = parse()
    workdir, env, data = workspace(args.workdir, "vidpred-train-bench-")
    sizes = [args.only] if args.only else ["tiny", "base"]
    plan = {"tiny": (args.layouts, args.steps, args.log_every), "base": (args.base_layouts, args.base_steps,
                                                                         args.base_log_every)}
    load_before = os.getloadavg()
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "torch": torch.__version__, "ceiling": [], "ceiling_pair": [], "train": [],
              "guard": guard()}
    for size in sizes:
        layouts, steps, log_every = plan[size]
        csteps = args.ceiling_steps if size == "tiny" else max(args.ceiling_steps // 10, 4)
        result["ceiling"].append(ceiling(size, csteps, warmup=5 if size == "tiny" else 1))
        print(f"(a) {size}: {result['ceiling'][-1]['clips_per_s']:.2f} clips/s", flush=True)
        if size == "tiny":  # the base model's plain step takes ~13 s here: one ceiling run is what time allows
            result["ceiling_pair"].append(ceiling_pair(size, csteps))
            print(f"(a2) {size}: {result['ceiling_pair'][-1]['clips_per_s']:.1f} clips/s", flush=True)
        for layout in layouts.split(","):
            workers, zero, *raw = layout.split(":")
            source = data.parent / "raw" if raw == ["raw"] else data
            row = train_row(size, int(workers), int(zero), steps, log_every, args.warmup_intervals, source, env,
                            workdir / "runs")
            result["train"].append(row)
            print(f"(b) {size} {workers} workers ZeRO-{zero} {row['data']}: {row['steady_clips_per_s']:.1f} clips/s, first step "
                  f"{row['to_first_step_s']:.1f} s after the command started", flush=True)
        result["ceiling"].append({**ceiling(size, csteps, warmup=5 if size == "tiny" else 1), "when": "after"})
    # the ceiling is timed before and after the runs (this VM's speed drifts); its mean per model is the goal's base
    merged = {}
    for c in result["ceiling"]:
        merged.setdefault(c["model"], []).append(c["clips_per_s"])
    result["ceiling_runs"] = result["ceiling"]
    result["ceiling"] = [{"model": m, "clips_per_s": statistics.mean(v), "runs": v} for m, v in merged.items()]
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    ceilings = {c["model"]: c["clips_per_s"] for c in result["ceiling"]}
    result["goals"] = {
        f"{r['model']} {r['workers']}w ZeRO-{r['zero']} {r['data']}": {
            "ratio": r["steady_clips_per_s"] / (r["workers"] * ceilings[r["model"]]), "goal": 0.9,
            "met": r["steady_clips_per_s"] >= 0.9 * r["workers"] * ceilings[r["model"]]}
        for r in result["train"]}
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
