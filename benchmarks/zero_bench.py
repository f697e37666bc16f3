"""ZeRO stages 0-3 on 2 CPU ranks (gloo, no Ray): per-rank bytes of parameters, gradients and optimizer
state, measured from the engines, against the ZeRO paper's division; and the step rate against stage 0.

Each stage runs in fresh processes (:mod:`vidpred.train.selfcheck`: the real GAN step, both engines, the
``base`` model at a small resolution). Bytes are read from the tensors DeepSpeed holds just before the
optimizer step of the last timed step (after backward), deduplicated by storage, for G and D together:

* params — the working weights (ZeRO-3: the rank's partition, plus the parameters small enough to stay
  whole on every rank, ``stage3_param_persistence_threshold``);
* grads — what survives backward until the step (ZeRO-0: every ``.grad``; 1-2: the rank's reduced
  partition; 3: the partition buffer). DeepSpeed 0.19's ZeRO-1 also drops the full gradients at the end of
  backward, holding them whole only *during* it; this is not a peak measurement;
* optimizer — AdamW's two moments; master — DeepSpeed's fp32 copy of the rank's partition (stages 1-3; in
  fp32 training it duplicates the partition of the weights, which the fp32 theory does not count).

Theory (fp32, AdamW, Ψ parameters, N ranks): params 4Ψ (stage 3: 4Ψ/N), grads 4Ψ (stages 2-3: 4Ψ/N),
optimizer 8Ψ (stages 1-3: 8Ψ/N). Writes benchmarks/results/zero_bench.json.

    python benchmarks/zero_bench.py [--size 32] [--steps 6] [--warmup 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from vidpred.train import selfcheck

RESULTS = Path(__file__).parent / "results" / "zero_bench.json"
WORLD = 2
KINDS = ("params", "grads", "optimizer", "master")


def _tensors(obj, depth: int = 0):
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, (list, tuple)) and depth < 3:
        for item in obj:
            yield from _tensors(item, depth + 1)
    elif isinstance(obj, dict) and depth < 3:
        for item in obj.values():
            yield from _tensors(item, depth + 1)


def held_bytes(engine) -> dict[str, int]:
    """Bytes this rank holds for ``engine``, by kind (names of DeepSpeed 0.19's ZeRO optimizers)."""
    opt, stage = engine.optimizer, engine.zero_optimization_stage()
    params = list(engine.module.parameters())
    inner = getattr(opt, "optimizer", opt)
    sources = {"optimizer": [s for state in inner.state.values() for s in state.values()],
               "grads": [p.grad for p in params if p.grad is not None]}
    if stage == 0:
        sources["params"] = params
    elif stage in (1, 2):
        sources.update(params=opt.bit16_groups_flat, master=opt.single_partition_of_fp32_groups)
        sources["grads"] += [g for g in _tensors(opt.averaged_gradients) if g is not None]
    else:
        sources.update(params=[*opt.fp16_partitioned_groups_flat, *(p.data for p in params if p.ds_persist)],
                       master=opt.fp32_partitioned_groups_flat, grads=[*sources["grads"], opt.grad_partitions_flat_buffer])
    seen, out = set(), dict.fromkeys(KINDS, 0)
    for kind in KINDS:
        for t in _tensors(sources.get(kind, [])):
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel())
            if t.numel() > 1 and key not in seen:  # scalars: Adam's step counters
                seen.add(key)
                out[kind] += t.numel() * t.element_size()
    return out


def theory(n_params: int, stage: int, world: int) -> dict[str, float]:
    return {"params": 4 * n_params / (world if stage >= 3 else 1),
            "grads": 4 * n_params / (world if stage >= 2 else 1),
            "optimizer": 8 * n_params / (world if stage >= 1 else 1)}


def _rank(rank: int, world: int, port: int, overrides: list[str], warmup: int, steps: int, out: str) -> None:
    import torch.distributed as dist

    from vidpred import config
    from vidpred.train.step import take_step

    selfcheck.init_rank(rank, world, port)
    cfg = config.load(overrides=overrides)
    g_eng, d_eng, _ = selfcheck.fresh_engines(cfg)
    held = {}

    def measure_before_step(net: str, engine) -> None:  # each engine right after its own backward
        real_step = engine.step

        def step():
            held[net] = held_bytes(engine)
            real_step()

        engine.step = step

    measure_before_step("g", g_eng)
    measure_before_step("d", d_eng)
    wall, cpu = [], []
    for step in range(warmup + steps):
        batch = selfcheck.synthetic_batch(cfg, rank, step)
        dist.barrier()
        started, started_cpu = time.perf_counter(), time.process_time()
        take_step(g_eng, d_eng, iter(batch.split(cfg.micro_batch)), cfg, rank, step)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    n_params = {net: sum(getattr(p, "ds_numel", p.numel()) for p in e.module.parameters())
                for net, e in (("g", g_eng), ("d", d_eng))}
    result = {"rank": rank, "held": held, "n_params": n_params, "wall_s": wall[warmup:], "cpu_s": cpu[warmup:],
              "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def run_stage(stage: int, args) -> dict:
    overrides = [f"model.size={args.model}", f"data.height={args.size}", f"data.width={args.size}",
                 "data.context=2", "data.future=2", f"data.batch_size={args.batch}", f"train.zero_stage={stage}"]
    with tempfile.TemporaryDirectory() as out:
        selfcheck.spawn(_rank, WORLD, overrides, args.warmup, args.steps, out)
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(WORLD)]
    n_params = sum(ranks[0]["n_params"].values())
    held = {kind: max(sum(r["held"][net][kind] for net in ("g", "d")) for r in ranks) for kind in KINDS}
    return {"stage": stage, "n_params": n_params, "held_bytes_per_rank": held,
            "theory_bytes_per_rank": theory(n_params, stage, WORLD),
            # a step ends when both ranks end it: per step, the slower rank
            **{kind: sorted(max(ts) for ts in zip(*(r[kind] for r in ranks))) for kind in ("wall_s", "cpu_s")},
            "peak_rss_per_rank": max(r["peak_rss"] for r in ranks)}


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def pooled(runs: list[dict]) -> dict:
    """One row from a stage's repeats: bytes from the first (they do not vary), step times of all steps."""
    times = {kind: sorted(t for r in runs for t in r[kind]) for kind in ("wall_s", "cpu_s")}
    return {**runs[0], **times, **{f"{kind}_median": median(ts) for kind, ts in times.items()},
            "wall_s_run_medians": [median(r["wall_s"]) for r in runs],
            "peak_rss_per_rank": max(r["peak_rss_per_rank"] for r in runs)}


def table(rows: list[dict]) -> str:
    """Markdown: bytes against theory; step time as the median of wall-clock and of CPU time (this process
    and its gloo threads, blind to waiting on a busy machine) and the fastest wall-clock step."""
    mib = 2**20
    base = rows[0]
    lines = ["stage | params MiB (theory, ratio) | grads MiB (theory, ratio) | optimizer MiB (theory, ratio) | "
             "master MiB | wall s/step (rate vs Z0) | CPU s/step (rate vs Z0) | fastest step s (rate vs Z0) | "
             "peak RSS MiB",
             "---|---|---|---|---|---|---|---|---"]
    for r in rows:
        held, want = r["held_bytes_per_rank"], r["theory_bytes_per_rank"]
        cells = [f"{held[k] / mib:.1f} ({want[k] / mib:.1f}, {held[k] / want[k]:.3f})" for k in ("params", "grads", "optimizer")]
        lines.append(f"ZeRO-{r['stage']} | " + " | ".join(cells) + f" | {held['master'] / mib:.1f} | "
                     + " | ".join(f"{r[k]:.3f} ({base[k] / r[k]:.2f}×)" for k in ("wall_s_median", "cpu_s_median"))
                     + f" | {r['wall_s'][0]:.3f} ({base['wall_s'][0] / r['wall_s'][0]:.2f}×)"
                     + f" | {r['peak_rss_per_rank'] / mib:.0f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="base", choices=["tiny", "base", "large"])
    p.add_argument("--size", type=int, default=32, help="square frame size (a multiple of 2**model.levels)")
    p.add_argument("--batch", type=int, default=2, help="clips per rank per step")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=6, help="timed steps per stage")
    p.add_argument("--stages", default="0,1,2,3")
    p.add_argument("--repeats", type=int, default=2, help="runs per stage (fresh processes each)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    stages = [int(s) for s in args.stages.split(",")]
    runs: dict[int, list[dict]] = {stage: [] for stage in stages}
    for repeat in range(args.repeats):  # stages interleaved, so a slow spell of a shared machine hits all
        for stage in stages if repeat % 2 == 0 else stages[::-1]:
            runs[stage].append(run_stage(stage, args))
            print(f"ZeRO-{stage} (run {repeat + 1}): {median(runs[stage][-1]['wall_s']):.3f} s/step", flush=True)
    rows = [pooled(runs[stage]) for stage in stages]
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "setup": {"model": args.model, "size": args.size, "batch_per_rank": args.batch, "ranks": WORLD,
                  "frames": "2 context + 2 future", "precision": "fp32", "backend": "gloo, 1 thread per rank",
                  "warmup": args.warmup, "timed_steps": args.steps, "repeats": args.repeats, "torch": torch.__version__,
                  "deepspeed": __import__("deepspeed").__version__, "cpu": platform.processor() or platform.machine()},
        "stages": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
