"""The real GAN step under DeepSpeed on N CPU ranks (gloo), without Ray: the ZeRO stage proofs
(tests/test_zero_stages.py), the non-finite skip across ranks (tests/test_faults.py) and the ZeRO benchmark
(benchmarks/zero_bench.py) run on it.

Each rank draws its own batches from (rank, step) alone (:func:`synthetic_batch`) and takes its steps as
training does (:func:`vidpred.train.step.take_step`: noise from (seed, rank, step)), so two runs that differ
only in the ZeRO stage differ only by floating-point reduction order.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import torch

from vidpred.net import free_port



def init_rank(rank: int, world: int, port: int, threads: int = 1) -> None:
    """This process as rank ``rank`` of a gloo group on 127.0.0.1, with DeepSpeed on its CPU accelerator."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), DS_ACCELERATOR="cpu")
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)


def spawn(fn: Callable, world: int, *args) -> None:
    """``fn(rank, world, port, *args)`` in ``world`` fresh processes; returns when all have exited."""
    import torch.multiprocessing as mp

    mp.spawn(fn, args=(world, free_port(), *args), nprocs=world, join=True)


def synthetic_batch(cfg, rank: int, step: int) -> torch.Tensor:
    """uint8 clips (B, T, H, W, 3), a function of (rank, step) only."""
    shape = (cfg.data.batch_size, cfg.data.context + cfg.data.future, cfg.data.height, cfg.data.width, 3)
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(10_000 * rank + step),
                         dtype=torch.uint8)


def fresh_engines(cfg):
    """(G engine, D engine, G's initial weights) at the run's seed; the process group must be up."""
    from vidpred.model import Discriminators, Generator
    from vidpred.train.engines import build_engines

    torch.manual_seed(cfg.train.seed)
    generator, discriminators = Generator(cfg.model), Discriminators(cfg.model)
    initial = {k: v.detach().clone() for k, v in generator.state_dict().items()}
    return (*build_engines(generator, discriminators, cfg), initial)


def record_grad_norms(engine, stage: int) -> list[float | None]:
    """Wrap ``engine.step`` to record the global gradient norm each optimizer step clips with: DeepSpeed's own
    (``get_global_grad_norm``) at ZeRO >= 1; at ZeRO-0, which does not keep it, computed from the gradients
    the step is about to apply (already averaged over the ranks). One entry per call of ``step``."""
    norms: list[float | None] = []
    step = engine.step

    def recorded_step(*args, **kwargs):
        if stage == 0:
            squares = [p.grad.detach().double().pow(2).sum() for p in engine.module.parameters() if p.grad is not None]
            norms.append(float(torch.stack(squares).sum().sqrt()) if squares else None)
        out = step(*args, **kwargs)
        if stage > 0:
            norm = engine.get_global_grad_norm()
            norms.append(None if norm is None else float(norm))
        return out

    engine.step = recorded_step
    return norms


def _rank_main(rank: int, world: int, port: int, runs: dict[str, list[str]], steps: int, out_path: str,
               nan_at: dict[int, list[int]] | None) -> None:
    import torch.distributed as dist

    from vidpred import config
    from vidpred.model import as_floats
    from vidpred.train import checkpoint
    from vidpred.train.checkpoint import consolidated_state
    from vidpred.train.faults import TestHooks
    from vidpred.train.step import all_finite, take_step

    hooks = TestHooks(nan={r: frozenset(s + 1 for s in steps) for r, steps in nan_at.items()}) if nan_at else None
    init_rank(rank, world, port)
    results = {}
    for name, overrides in runs.items():  # one process group, fresh engines per run
        cfg = config.load(overrides=overrides)
        g_eng, d_eng, initial = fresh_engines(cfg)
        norms = {"g": record_grad_norms(g_eng, cfg.train.zero_stage), "d": record_grad_norms(d_eng, cfg.train.zero_stage)}
        losses, g_after = [], []
        for step in range(steps):
            finite = all_finite if hooks is None else hooks.finite(rank, step + 1)
            micro = iter(synthetic_batch(cfg, rank, step).split(cfg.micro_batch))
            losses.append(as_floats(take_step(g_eng, d_eng, micro, cfg, rank, step, finite)))
            if nan_at:
                g_after.append(consolidated_state(g_eng))
        results[name] = {"losses": losses, "g_initial": initial, "g_after": g_after, "grad_norms": norms,
                         "g": consolidated_state(g_eng), "d": consolidated_state(d_eng)}
        # every rank's part of a real checkpoint, merged into one directory as Ray Train does
        part = checkpoint.save(g_eng, d_eng, steps, cfg, rank)
        shutil.copytree(part, os.path.join(os.path.dirname(out_path), name), dirs_exist_ok=True)
        shutil.rmtree(part)
        del g_eng, d_eng
    if rank == 0:
        torch.save(results, out_path)
    dist.barrier()
    dist.destroy_process_group()


def run(runs: dict[str, list[str]], steps: int, out_path: str, world: int = 2,
        nan_at: dict[int, list[int]] | None = None) -> dict[str, dict]:
    """{name: overrides} → {name: {"losses": [per-step dicts], "g_initial", "g", "d": state dicts,
    "g_after": G's weights after each step when ``nan_at`` is given, "grad_norms": {"g": [...], "d": [...]} the
    global gradient norm of each optimizer step}}; each run's checkpoint directory is
    left beside ``out_path`` under its name."""
    spawn(_rank_main, world, runs, steps, out_path, nan_at)
    return torch.load(out_path, weights_only=False)
