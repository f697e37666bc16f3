"""DeepSpeed engines for the generator and the discriminator: separate optimizers, same ZeRO stage."""

from __future__ import annotations

from typing import Any

import torch

from vidpred.config import Config


def ds_config(cfg: Config) -> dict[str, Any]:
    """The DeepSpeed config both engines share (each gets its own optimizer)."""
    t = cfg.train
    return {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": t.grad_clip,
        "zero_optimization": {"stage": t.zero_stage},
        "bf16": {"enabled": t.precision == "bf16"},
        "steps_per_print": 2**31 - 1,  # vidpred logs its own progress
        "wall_clock_breakdown": False,
    }


def _engine(module: torch.nn.Module, lr: float, cfg: Config):
    import deepspeed

    # betas (0.5, 0.999): the usual GAN choice; a client torch optimizer works at every ZeRO stage.
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=0.0)
    engine, *_ = deepspeed.initialize(model=module, optimizer=optimizer, config=ds_config(cfg))
    return engine


def build_engines(generator: torch.nn.Module, discriminator: torch.nn.Module, cfg: Config):
    """(G engine, D engine). torch.distributed must already be up (Ray Train does it)."""
    return _engine(generator, cfg.train.lr_g, cfg), _engine(discriminator, cfg.train.lr_d, cfg)
