"""Checkpoints: every rank's DeepSpeed shards for G and D, plus a consolidated fp32 generator.

Layout of one checkpoint directory (Ray merges the ranks' uploads into it):
``g/`` and ``d/`` (DeepSpeed ``save_checkpoint`` output, all ranks' shards), ``generator.pt`` (fp32
state dict, loadable without DeepSpeed: with ``train.ema_decay`` the average of the weights, which eval and
export then use, :mod:`vidpred.train.ema`; ``meta.json`` says which under ``generator_weights``),
``meta.json`` (step, the world size that wrote it, data position and the other progress counters, config),
and in an elastic run's checkpoints ``reshard.pt``: both engines' state gathered whole
(:mod:`vidpred.train.reshard`), what a worker group of another size loads. The progress counters also ride
in DeepSpeed's ``client_state``, so the engines and the counters of a checkpoint always come from the same
save.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from vidpred.config import Config, ModelConfig, UserError
from vidpred.storage import atomic_write

TAG = "state"
GENERATOR_FILE = "generator.pt"
RESHARD_FILE = "reshard.pt"
META_FILE = "meta.json"
GENERATOR_WEIGHTS = "generator_weights"  # meta.json: what GENERATOR_FILE holds, "weights" or "ema" (their average)
EXPORT_FORMAT = "vidpred-generator/1"  # what ``vidpred export`` writes (vidpred.train.export)
EXPECTED = ("a checkpoint folder as vidpred train writes it (<storage>/<run>/checkpoint_<time>/, holding "
            f"{META_FILE}, {GENERATOR_FILE}, g/ and d/)")


class CheckpointError(UserError):
    """A path given as a checkpoint is not one vidpred can read; the message names it and what is expected."""



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


def world_size() -> int:
    """The ranks of the process group (1 without one)."""
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def save(g_eng, d_eng, step: int, cfg: Config, rank: int, progress: dict[str, Any] | None = None,
         ema=None) -> Path:
    """Write this rank's part of a checkpoint into a fresh temp dir and return it: the caller hands it to Ray
    Train and owns it (an asynchronous upload deletes it when done; otherwise the caller does).

    ``progress``: counters to restore with the step (plain JSON values: data position, non-finite counts).
    An elastic run (``train.min_workers``) also writes both engines' state whole (:data:`RESHARD_FILE`).
    ``ema``: the run's :class:`vidpred.train.ema.GeneratorEMA`, whose average becomes :data:`GENERATOR_FILE`."""
    from vidpred.train import reshard

    root = Path(tempfile.mkdtemp(prefix="vidpred-ckpt-"))
    state = {**(progress or {}), "step": step, "world": world_size(),
             **({"ema_updates": ema.updates} if ema is not None else {})}
    g_eng.save_checkpoint(str(root / "g"), tag=TAG, client_state=state)
    d_eng.save_checkpoint(str(root / "d"), tag=TAG, client_state=state)
    generator = consolidated_state(g_eng) if ema is None else ema.state_dict()
    whole = {"g": reshard.full_state(g_eng), "d": reshard.full_state(d_eng)} if cfg.train.elastic else None
    if rank == 0:
        atomic_write(root / GENERATOR_FILE, lambda p: torch.save(generator, p))
        if whole is not None:
            atomic_write(root / RESHARD_FILE, lambda p: torch.save(whole, p))
        meta = {**state, GENERATOR_WEIGHTS: "weights" if ema is None else "ema",
                "config": cfg.model_dump(mode="json")}
        atomic_write(root / META_FILE, lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    return root


def restore(g_eng, d_eng, directory: str | os.PathLike, ema=None) -> dict[str, Any]:
    """Load both engines (weights, optimizer, LR scheduler) from a checkpoint dir; returns its progress
    counters: at least ``step``, ``world`` (the world size that wrote it), and whatever :func:`save` was
    given. At the world size that wrote it, from DeepSpeed's own shards; at another, from the checkpoint's
    whole state (:data:`RESHARD_FILE`), which only an elastic run's checkpoints have: CheckpointError
    otherwise. ``ema`` (a :class:`vidpred.train.ema.GeneratorEMA`) takes the checkpoint's average when it
    has one, and otherwise starts over from the restored weights."""
    from vidpred.train import reshard

    root = Path(directory)
    meta = read_meta(root)
    written_by, world = int(meta.get("world", world_size())), world_size()
    if written_by != world:
        whole = root / RESHARD_FILE
        if not whole.is_file():
            raise CheckpointError(
                f"{root}: written by {written_by} workers, loaded by {world}: only the checkpoints of an elastic "
                f"run (train.min_workers set) hold the whole state that can be resharded to another number of "
                f"workers; run this one with train.num_workers = {written_by}")
        saved = torch.load(whole, map_location="cpu", weights_only=True)
        reshard.load_full_state(g_eng, saved["g"])
        reshard.load_full_state(d_eng, saved["d"])
        _restore_ema(ema, root, meta)
        return {**_counters(meta), "world": written_by}
    path, g_state = g_eng.load_checkpoint(str(root / "g"), tag=TAG)
    d_path, _ = d_eng.load_checkpoint(str(root / "d"), tag=TAG)
    if path is None or d_path is None:
        raise FileNotFoundError(f"{directory}: no DeepSpeed checkpoint under g/{TAG} and d/{TAG}")
    state = _counters(g_state or {})
    _restore_ema(ema, root, meta)
    return {**state, "step": int(state.get("step", 0)), "world": world}


def _restore_ema(ema, root: Path, meta: dict[str, Any]) -> None:
    if ema is None:
        return
    if meta.get(GENERATOR_WEIGHTS) == "ema":
        ema.load(torch.load(root / GENERATOR_FILE, map_location="cpu", weights_only=True), int(meta["ema_updates"]))
    else:  # a checkpoint of a run without the average (train.init_from, or ema_decay set on --resume)
        ema.reset()


def _counters(saved: dict[str, Any]) -> dict[str, Any]:
    """The plain progress counters among what a save recorded (the config and engine internals left out)."""
    return {k: v for k, v in saved.items() if isinstance(v, (int, float, str))}


def parse_meta(text: bytes | str, where: str) -> dict[str, Any]:
    """A checkpoint's meta.json, checked for what every reader uses (``step``, ``config.model``,
    ``config.train``, ``config.data``); CheckpointError naming ``where`` otherwise."""
    try:
        meta = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{where}: not valid JSON ({exc}); the checkpoint is damaged: use another "
                              "checkpoint of the run") from None
    config = meta.get("config") if isinstance(meta, dict) else None
    missing = [k for k in ("model", "train", "data") if not isinstance((config or {}).get(k), dict)]
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int) or missing:
        raise CheckpointError(f"{where}: not a vidpred checkpoint's {META_FILE} (expected step and config "
                              f"with data, model, train{'; missing config.' + ', config.'.join(missing) if missing else ''})")
    return meta


def _latest_inside(root: Path) -> Path | None:
    inside = sorted(p for p in root.glob("checkpoint_*") if (p / META_FILE).is_file())
    return inside[-1] if inside else None


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """The meta.json of a local checkpoint folder; CheckpointError saying what the path is instead (missing,
    a file, an exported generator, a run folder, a folder without meta.json, a damaged meta.json)."""
    root = Path(directory).expanduser()
    if not root.exists():
        raise CheckpointError(f"{root}: does not exist; expected {EXPECTED}")
    if not root.is_dir():
        hint = ""
        if root.suffix == ".pt":
            hint = " (a .pt file is an exported generator or a weights file: pass the checkpoint folder)"
        raise CheckpointError(f"{root}: is a file, not a folder{hint}; expected {EXPECTED}")
    meta = root / META_FILE
    if not meta.is_file():
        latest = _latest_inside(root)
        hint = f"; it looks like a run folder: its latest checkpoint is {latest}" if latest else ""
        raise CheckpointError(f"{root}: no {META_FILE} in it{hint}; expected {EXPECTED}")
    try:
        text = meta.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{meta}: cannot be read ({exc.strerror})") from None
    return parse_meta(text, str(meta))


def inside_checkpoint(path: str | os.PathLike) -> Path | None:
    """The checkpoint folder that ``path`` lies in (or is), if any: nothing vidpred writes goes there."""
    p = Path(path).expanduser().resolve()
    for folder in (p, *p.parents):
        if (folder / META_FILE).is_file() and ((folder / "g").is_dir() or (folder / GENERATOR_FILE).is_file()):
            return folder
    return None


def load_generator(directory: str | os.PathLike):
    """(generator in eval mode, the run's config as plain data) from a checkpoint dir; no DeepSpeed or Ray.

    Only the model section is validated: the run's data paths need not exist where the checkpoint is read.
    """
    from vidpred.model import Generator

    root = Path(directory).expanduser()
    raw = read_meta(root)["config"]
    try:
        # written before model.warp_from existed: those generators warped the previous frame only
        model = ModelConfig.model_validate({"warp_from": "previous", **raw["model"]})
    except ValueError as exc:
        raise CheckpointError(f"{root / META_FILE}: its model config is not valid here ({exc})") from None
    weights = root / GENERATOR_FILE
    if not weights.is_file():
        raise CheckpointError(f"{root}: no {GENERATOR_FILE} in it; expected {EXPECTED}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises pickle, zip and runtime errors for a bad file
        raise CheckpointError(f"{weights}: cannot be read as weights ({type(exc).__name__}: {exc}); the "
                              "checkpoint is damaged: use another checkpoint of the run") from None
    if isinstance(state, dict) and state.get("format") == EXPORT_FORMAT:
        raise CheckpointError(f"{weights}: holds a `vidpred export` file, not the checkpoint's own weights "
                              "(was it exported over itself?); use another checkpoint of the run, or load "
                              "this file with vidpred.train.export.load_exported")
    g = Generator(model)
    try:
        g.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{weights}: does not fit the model its {META_FILE} describes ({first})") from None
    return g.eval(), raw
