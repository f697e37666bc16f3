"""Run the real GAN step under DeepSpeed on 2 CPU ranks (gloo) without Ray, for stage-equivalence tests.

Each rank gets its own deterministic batches and noise per step, so two runs that differ only in the
ZeRO stage should differ only by floating-point reduction order.
"""

import os
import shutil
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, runs: dict[str, list[str]], steps: int, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), DS_ACCELERATOR="cpu")
    torch.set_num_threads(1)
    from vidpred import config
    from vidpred.model import Discriminators, Generator
    from vidpred.train import checkpoint
    from vidpred.train.checkpoint import consolidated_state
    from vidpred.train.engines import build_engines
    from vidpred.train.step import gan_step

    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = {}
    for name, overrides in runs.items():  # one process group, fresh engines per run
        cfg = config.load(overrides=overrides)
        torch.manual_seed(cfg.train.seed)
        generator, discriminators = Generator(cfg.model), Discriminators(cfg.model)
        initial = {k: v.detach().clone() for k, v in generator.state_dict().items()}
        g_eng, d_eng = build_engines(generator, discriminators, cfg)
        shape = (cfg.data.batch_size, cfg.data.context + cfg.data.future, cfg.data.height, cfg.data.width, 3)
        losses = []
        for step in range(steps):
            data = torch.Generator().manual_seed(10_000 * rank + step)
            batch = torch.randint(0, 256, shape, generator=data, dtype=torch.uint8)
            torch.manual_seed(1_000_000 + 10_000 * rank + step)  # the generator's z noise
            losses.append(gan_step(g_eng, d_eng, batch, cfg, step=step))
        results[name] = {"losses": losses, "g_initial": initial,
                         "g": consolidated_state(g_eng), "d": consolidated_state(d_eng)}
        # every rank's part of a real checkpoint, merged into one directory as Ray Train does
        with checkpoint.save(g_eng, d_eng, steps, cfg, rank) as part:
            shutil.copytree(part, os.path.join(os.path.dirname(out_path), name), dirs_exist_ok=True)
        del g_eng, d_eng
    if rank == 0:
        torch.save(results, out_path)
    dist.barrier()
    dist.destroy_process_group()


def run(runs: dict[str, list[str]], steps: int, out_path: str, world: int = 2) -> dict[str, dict]:
    """{name: overrides} → {name: {"losses": [per-step dicts], "g_initial", "g", "d": state dicts}};
    each run's checkpoint directory is left beside ``out_path`` under its name."""
    mp.spawn(_rank_main, args=(world, free_port(), runs, steps, out_path), nprocs=world, join=True)
    return torch.load(out_path, weights_only=False)
