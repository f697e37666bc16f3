"""``vidpred export CK OUT``: a checkpoint's generator as one fp32 file that loads without DeepSpeed.

The weights come from the DeepSpeed shards of every rank (``zero_to_fp32`` merges ZeRO-1/2/3 partitions;
ZeRO-0 has one full copy), so a bf16 run exports its fp32 master weights, not the bf16 working copy.
The file holds the model config next to the weights: ``load_exported`` rebuilds the generator from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vidpred.config import ModelConfig
from vidpred.train.checkpoint import TAG, atomic_write_bytes, read_meta

FORMAT = "vidpred-generator/1"


def fp32_generator_state(checkpoint_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The generator's fp32 weights merged from all ranks' DeepSpeed shards under ``checkpoint_dir/g``."""
    g_dir = Path(checkpoint_dir) / "g"
    stage = read_meta(checkpoint_dir)["config"]["train"]["zero_stage"]
    if stage == 0:
        states = torch.load(g_dir / TAG / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
        return {k: v.float() for k, v in states["module"].items()}
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return {k: v.float() for k, v in get_fp32_state_dict_from_zero_checkpoint(str(g_dir), tag=TAG).items()}


def export(checkpoint: str, out: str | os.PathLike) -> Path:
    """Write the generator of ``checkpoint`` (local dir or a storage URI such as s3://…) to ``out``."""
    from ray.train import Checkpoint

    from vidpred.train.resume import location

    path, fs = location(checkpoint)
    with Checkpoint(path, filesystem=fs).as_directory() as directory:
        meta = read_meta(directory)
        payload = {"format": FORMAT, "step": meta["step"], "config": meta["config"],
                   "state_dict": fp32_generator_state(directory)}
    out = Path(out)
    atomic_write_bytes(out, lambda p: torch.save(payload, p))
    return out


def load_exported(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(generator in eval mode, the run's config as plain data); needs only torch and vidpred.model."""
    from vidpred.model import Generator

    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a vidpred export (format {payload.get('format')!r}, expected {FORMAT!r})")
    generator = Generator(ModelConfig.model_validate(payload["config"]["model"]))
    generator.load_state_dict(payload["state_dict"])
    return generator.eval(), payload["config"]
