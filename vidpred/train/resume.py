"""Resuming a run, and the data order that a restored worker continues.

Ray Train V2 resumes by itself when a TorchTrainer gets the ``RunConfig(name, storage_path)`` of an
existing run: its controller reads the run's ``checkpoint_manager_snapshot.json`` and every worker's
``ray.train.get_checkpoint()`` is the latest checkpoint. The same happens inside one ``fit()`` when a worker
dies and ``FailureConfig(max_failures)`` lets Ray restart the worker group. On top of that, vidpred:

* turns ``vidpred train --resume RUN`` into that (name, storage_path): RUN is a run name under
  ``train.storage_path``, a run directory, or a run URI such as ``s3://bucket/runs/NAME``;
* takes the config from the run's latest checkpoint, with ``--config`` and ``--set`` laid over it (usually
  a larger ``train.steps``), and refuses changes that the checkpoint cannot be loaded with (:data:`PINNED`);
* pins the data order: the train dataset is made again at every start of the worker group (Ray Train calls
  a dataset given as a callable each time), and its first epoch is the epoch of the latest checkpoint —
  each epoch's file order comes from ``(train.seed, epoch)`` (:class:`vidpred.data.pipeline.FileSource`) —
  so a restored worker, skipping the batches of that epoch it had consumed, continues the stream the
  interrupted run was reading.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vidpred import config as config_mod
from vidpred.config import Config, ConfigError, DataConfig, is_remote_uri, remote_uri_problem
from vidpred.storage import join, location, storage_error, storage_path
from vidpred.train.checkpoint import EXPECTED, META_FILE, CheckpointError, parse_meta, read_meta

# Keys a resumed run must keep: the engines' shards are laid out by them (model shapes, ZeRO partitions per
# worker, dtypes, where the optimizer state lives), and the data position counts per-worker micro-batches
# (data.batch_size / train.grad_accum clips each).
# train.min_workers too: the batch split and resharding of an elastic run are laid out for its range.
PINNED = ("model", "train.zero_stage", "train.num_workers", "train.min_workers", "train.precision",
          "train.offload_optimizer", "data.batch_size", "train.grad_accum")


def split_run(spec: str, storage: str) -> tuple[str, str]:
    """RUN → (storage_path, run name). A bare name is looked up under ``storage``."""
    if "://" not in spec and "/" not in spec and os.sep not in spec:
        return storage, spec
    if is_remote_uri(spec) and (problem := remote_uri_problem(spec)):
        raise ConfigError(f"--resume {spec}: {problem}")
    if not is_remote_uri(spec):
        spec = str(Path(spec.removeprefix("file://")).expanduser().resolve())
    spec = spec.rstrip("/")
    parent, _, name = spec.rpartition("/")
    return parent, name


def latest_checkpoint(run_dir: str, data: DataConfig | None = None):
    """The run's latest registered checkpoint (``ray.train.Checkpoint``), or None: no such run, none yet."""
    from ray.train import Result


    path, fs = location(run_dir, data)
    try:
        return Result.from_path(path, storage_filesystem=fs).checkpoint
    except (RuntimeError, FileNotFoundError):  # no run directory, or no checkpoint manager snapshot in it
        return None
    except OSError as exc:  # unreachable storage, refused credentials: said with the URI, before Ray starts
        raise storage_error(run_dir, exc) from None


def checkpoint_meta(ckpt) -> dict[str, Any]:
    """A checkpoint's meta.json (step, data position, config) read in place — the shards stay where they are."""
    where = f"{ckpt.path.rstrip('/')}/{META_FILE}"
    with ckpt.filesystem.open_input_stream(where) as f:
        return parse_meta(f.read(), where)


def require_checkpoint(uri: str, data: DataConfig | None = None) -> dict[str, Any]:
    """The meta.json of the checkpoint at ``uri`` (local folder or s3://…); CheckpointError when there is
    none, said before Ray starts or anything is written (``train.init_from``, ``vidpred export``)."""
    import pyarrow.fs as pafs


    if not is_remote_uri(uri):
        return read_meta(uri.removeprefix("file://"))
    path, fs = location(uri, data)
    try:
        found = fs.get_file_info(f"{path.rstrip('/')}/{META_FILE}").type == pafs.FileType.File
        if found:
            with fs.open_input_stream(f"{path.rstrip('/')}/{META_FILE}") as f:
                return parse_meta(f.read(), f"{uri.rstrip('/')}/{META_FILE}")
    except OSError as exc:
        raise storage_error(uri, exc) from None
    raise CheckpointError(f"{uri}: no {META_FILE} there; expected {EXPECTED}")


def _get(raw: dict[str, Any], dotted: str) -> Any:
    """The value at ``dotted``; None where the config has no such key (a checkpoint older than the key: its
    default, None, is what that run had)."""
    for part in dotted.split("."):
        raw = raw.get(part) if isinstance(raw, dict) else None
    return raw


def check_compatible(saved: dict[str, Any], cfg: Config, run: str) -> None:
    """Refuse a config whose :data:`PINNED` keys differ from those the run's checkpoint was saved with."""
    now = cfg.model_dump(mode="json")
    changed = [f"{key}: saved {_get(saved, key)!r}, now {_get(now, key)!r}" for key in PINNED
               if _get(saved, key) != _get(now, key)]
    if changed:
        raise ConfigError(f"run {run} cannot continue with this config — its checkpoint is laid out for the "
                          f"values it was saved with (" + "; ".join(changed) + "): drop those --set/--config "
                          "values, or start a new run (train.init_from takes its weights)")


def resume_config(spec: str, path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...]) -> Config:
    """The config of ``vidpred train --resume RUN``: the latest checkpoint's, then ``path``, then ``overrides``,
    with ``train.name`` / ``train.storage_path`` pointing at the run."""
    asked = config_mod.load(path, overrides)
    storage, name = split_run(spec, storage_path(asked))
    run_dir = join(storage, name)
    ckpt = latest_checkpoint(run_dir, asked.data)
    if ckpt is None:
        raise ConfigError(f"--resume {spec}: {run_dir} holds no checkpoint of a Ray Train run "
                          "(wrong name or storage path, or the run stopped before its first checkpoint)")
    saved = checkpoint_meta(ckpt)["config"]
    cfg = config_mod.load(path, [*overrides, f"train.name={name}", f"train.storage_path={storage}"], base=saved)
    check_compatible(saved, cfg, run_dir)
    return cfg


def announce_resume(cfg: Config, run_dir: str) -> None:
    """When ``run_dir`` already holds a checkpoint (Ray Train will continue from it): check the config
    against it and say so; refuse when the run already took ``train.steps`` steps."""
    ckpt = latest_checkpoint(run_dir, cfg.data)
    if ckpt is None:
        return
    meta = checkpoint_meta(ckpt)
    check_compatible(meta["config"], cfg, run_dir)
    if meta["step"] >= cfg.train.steps:
        raise ConfigError(f"train.steps = {cfg.train.steps}: run {run_dir} is already at step {meta['step']}; "
                          "set a larger train.steps to train it further")
    print(f"[vidpred] resuming {run_dir} from its checkpoint at step {meta['step']} (data epoch "
          f"{meta.get('epoch', 0)}, {meta.get('epoch_batches', 0)} batches into it): {ckpt.path}", flush=True)


class TrainData:
    """The train dataset as a callable: Ray Train V2 makes it again at every start of the worker group
    (the first, and each restart after a lost worker), its epoch order beginning at the epoch of the
    run's latest checkpoint — the one the workers are about to restore."""

    def __init__(self, cfg: Config, root: str, run_dir: str, uris: list[str] | None, skip_log: Any = None):
        self.cfg, self.root, self.run_dir, self.uris, self.skip_log = cfg, root, run_dir, uris, skip_log

    def start_epoch(self) -> int:
        ckpt = latest_checkpoint(self.run_dir, self.cfg.data)
        return int(checkpoint_meta(ckpt).get("epoch", 0)) if ckpt is not None else 0

    def __call__(self):
        from vidpred.data.pipeline import build_dataset

        # the file order of an execution comes from (seed, epoch): starting at the restored epoch replays its order
        return build_dataset(self.cfg.data, self.root, "train", seed=self.cfg.train.seed, skip_log=self.skip_log,
                             uris=self.uris, first_epoch=self.start_epoch())
