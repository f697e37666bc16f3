"""Checkpoints: every rank's DeepSpeed shards for G and D, plus a consolidated fp32 generator.

Layout of one checkpoint directory (Ray merges the ranks' uploads into it):
``g/`` and ``d/`` (DeepSpeed ``save_checkpoint`` output, all ranks' shards), ``generator.pt`` (fp32
state dict, loadable without DeepSpeed), ``meta.json`` (step, data position and the other progress
counters, config). The progress counters also ride in DeepSpeed's ``client_state``, so the engines and
the counters of a checkpoint always come from the same save.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from vidpred.config import Config, ModelConfig

TAG = "state"
GENERATOR_FILE = "generator.pt"
META_FILE = "meta.json"


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def consolidated_state(engine) -> dict[str, torch.Tensor]:
    """The engine's full module weights in fp32 on CPU (gathers ZeRO-3 partitions; call on every rank)."""
    params = list(engine.module.parameters())
    if engine.zero_optimization_stage() >= 3:
        import deepspeed

        ctx = deepspeed.zero.GatheredParameters(params)
    else:
        ctx = contextlib.nullcontext()
    with ctx:
        return {k: v.detach().float().cpu().clone() for k, v in engine.module.state_dict().items()}


def save(g_eng, d_eng, step: int, cfg: Config, rank: int,
         progress: dict[str, Any] | None = None) -> tempfile.TemporaryDirectory:
    """Write this rank's part of a checkpoint into a fresh temp dir (caller reports, then cleans up).

    ``progress``: counters to restore with the step (plain JSON values: data position, non-finite counts)."""
    tmp = tempfile.TemporaryDirectory(prefix="vidpred-ckpt-")
    root = Path(tmp.name)
    state = {**(progress or {}), "step": step}
    g_eng.save_checkpoint(str(root / "g"), tag=TAG, client_state=state)
    d_eng.save_checkpoint(str(root / "d"), tag=TAG, client_state=state)
    generator = consolidated_state(g_eng)
    if rank == 0:
        atomic_write_bytes(root / GENERATOR_FILE, lambda p: torch.save(generator, p))
        meta = {**state, "config": cfg.model_dump(mode="json")}
        atomic_write_bytes(root / META_FILE, lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    return tmp


def restore(g_eng, d_eng, directory: str | os.PathLike) -> dict[str, Any]:
    """Load both engines (weights, optimizer, LR scheduler) from a checkpoint dir; returns its progress
    counters: at least ``step``, and whatever :func:`save` was given (older checkpoints: step only)."""
    root = Path(directory)
    path, g_state = g_eng.load_checkpoint(str(root / "g"), tag=TAG)
    d_path, _ = d_eng.load_checkpoint(str(root / "d"), tag=TAG)
    if path is None or d_path is None:
        raise FileNotFoundError(f"{directory}: no DeepSpeed checkpoint under g/{TAG} and d/{TAG}")
    state = {k: v for k, v in (g_state or {}).items() if isinstance(v, (int, float, str))}
    return {**state, "step": int(state.get("step", 0))}


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(directory) / META_FILE).read_text())


def load_generator(directory: str | os.PathLike):
    """(generator in eval mode, the run's config as plain data) from a checkpoint dir; no DeepSpeed or Ray.

    Only the model section is validated: the run's data paths need not exist where the checkpoint is read.
    """
    from vidpred.model import Generator

    root = Path(directory)
    raw = read_meta(root)["config"]
    g = Generator(ModelConfig.model_validate(raw["model"]))
    g.load_state_dict(torch.load(root / GENERATOR_FILE, map_location="cpu", weights_only=True))
    return g.eval(), raw
