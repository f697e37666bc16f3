"""``vidpred export CK OUT``: a checkpoint's generator as one fp32 file that loads without DeepSpeed.

The weights come from the DeepSpeed shards of every rank (``zero_to_fp32`` merges ZeRO-1/2/3 partitions;
ZeRO-0 has one full copy), so a bf16 run exports its fp32 master weights, not the bf16 working copy. A run
with ``train.ema_decay`` exports the average of its weights instead (fp32, the checkpoint's ``generator.pt``),
the weights its validation and ``vidpred eval`` score.
The file holds the model config next to the weights: ``load_exported`` rebuilds the generator from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vidpred import console
from vidpred.config import DataConfig, ModelConfig
from vidpred.storage import atomic_write, location
from vidpred.train.checkpoint import (EXPORT_FORMAT, GENERATOR_FILE, GENERATOR_WEIGHTS, META_FILE, TAG,
                                      CheckpointError, inside_checkpoint, load_generator, read_meta)

FORMAT = EXPORT_FORMAT


def fp32_generator_state(checkpoint_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The generator's fp32 weights merged from all ranks' DeepSpeed shards under ``checkpoint_dir/g``, or
    the average of them that the checkpoint's generator.pt holds when the run kept one."""
    g_dir = Path(checkpoint_dir) / "g"
    meta = read_meta(checkpoint_dir)
    if meta.get(GENERATOR_WEIGHTS) == "ema":
        return {k: v.float() for k, v in load_generator(checkpoint_dir)[0].state_dict().items()}
    stage = meta["config"]["train"].get("zero_stage")
    if not (g_dir / TAG).is_dir():
        raise CheckpointError(f"{checkpoint_dir}: no DeepSpeed shards under g/{TAG}; expected a checkpoint folder "
                              f"as vidpred train writes it ({META_FILE}, {GENERATOR_FILE}, g/, d/)")
    try:
        if stage == 0:
            states = torch.load(g_dir / TAG / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
            return {k: v.float() for k, v in states["module"].items()}
        with console.quiet():  # DeepSpeed prints its accelerator, every shard and a progress bar
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

            merged = get_fp32_state_dict_from_zero_checkpoint(str(g_dir), tag=TAG)
        return {k: v.float() for k, v in merged.items()}
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{g_dir / TAG}: the DeepSpeed shards cannot be read ({type(exc).__name__}: {exc}); "
                              "the checkpoint is damaged or incomplete: use another checkpoint of the run") from None


def export(checkpoint: str, out: str | os.PathLike, data: DataConfig | None = None, force: bool = False) -> Path:
    """Write the generator of ``checkpoint`` (local dir, relative or not, or a storage URI such as s3://…,
    reached with ``data``'s S3 settings) to ``out``. Refuses an ``out`` that exists (unless ``force``) and,
    always, one inside a checkpoint: an export written over ``generator.pt`` would destroy it."""
    from ray.train import Checkpoint

    from vidpred.train.resume import require_checkpoint

    if (holder := inside_checkpoint(out)) is not None:
        raise CheckpointError(f"OUT {str(out)!r}: lies inside the checkpoint {holder}; vidpred never writes into "
                              "a checkpoint (even with --force): choose a path outside it")
    out = console.output_file(out, force, "OUT")
    require_checkpoint(checkpoint, data)
    path, fs = location(checkpoint, data)
    with Checkpoint(path, filesystem=fs).as_directory() as directory:
        meta = read_meta(directory)
        payload = {"format": FORMAT, "step": meta["step"], "config": meta["config"],
                   "state_dict": fp32_generator_state(directory)}
    atomic_write(out, lambda p: torch.save(payload, p))
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
