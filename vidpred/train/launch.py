"""The driver side of ``vidpred train``: data ready → Ray up → TorchTrainer.fit → the last checkpoint.

Ray: joins ``RAY_ADDRESS`` when it is set (``ray job submit`` sets it), else starts a local instance.
Workers claim ``train.cpus_per_worker`` CPUs each (fractional by default) so Ray Data's decode tasks
always have a CPU left: on a 2-core box whole-CPU workers starve the data pipeline and the run hangs.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from vidpred import raycompat
from vidpred.config import Config, ConfigError, UserError, is_remote_uri
from vidpred.console import RayOutput
from vidpred.data.pipeline import build_dataset
from vidpred.data.report import DataSummary, finish_run_summary, start_skip_log, training_summary
from vidpred.data.sources import list_videos
from vidpred.storage import as_uri, join, location, storage_path
from vidpred.train.loop import loop_config, train_loop_per_worker
from vidpred.train.plan import resolve_auto
from vidpred.train.resume import TrainData, announce_resume, require_checkpoint


@dataclass
class TrainResult:
    name: str
    run_dir: str          # local path or URI under storage_path
    dataset: str          # the dataset URI trained on
    checkpoint: object    # ray.train.Checkpoint of the last step
    metrics: dict
    data_summary: str | None = None  # URI of the run's data_summary.json (usable and skipped files)
    log_file: str | None = None      # Ray's, Ray Data's and DeepSpeed's own output of the run

    @property
    def checkpoint_uri(self) -> str:
        return as_uri(self.run_dir, self.checkpoint.path)


def dataset_root(cfg: Config) -> str:
    """The dataset URI; with none configured, the synthetic set (generated once, then reused)."""
    d = cfg.data
    if d.uri is not None:
        return d.uri
    from vidpred.data.synth import parse_size, synth_dataset

    width, height = parse_size(d.synth_size)
    root = Path(d.cache_dir) / f"synth-{d.synth_clips}x{d.synth_seconds:g}s-{width}x{height}-seed{cfg.train.seed}"
    reused = []

    def progress(msg: str) -> None:  # a clip written now is a line; the ones already there, one line in all
        if msg.endswith("exists, skipped"):
            reused.append(msg)
        else:
            print(f"[vidpred]   {msg}", flush=True)

    paths = synth_dataset(root, clips=d.synth_clips, seconds=d.synth_seconds, fps=30, size=(width, height),
                          seed=cfg.train.seed, progress=progress)
    print(f"[vidpred] synthetic dashcam set: {root} ({len(paths)} clips"
          + (f", {len(reused)} of them made by an earlier run)" if reused else ")"), flush=True)
    return str(root)


def run_name(cfg: Config) -> str:
    return cfg.train.name or time.strftime("vidpred-%Y%m%d-%H%M%S")


DECODE_TASK_CPUS = 1.0  # Ray Data's default for a map task


def init_ray() -> None:
    """Join ``RAY_ADDRESS`` (or a running local cluster, as ``ray.init()`` does), else start a local one, on
    127.0.0.1 only (:func:`vidpred.raycompat.init`)."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False  # vidpred prints its own progress
    raycompat.init(logging_level="WARNING", log_to_driver=True)


def runs_that_fit(cfg: Config, total_cpus: float) -> int:
    """How many runs of ``cfg``'s CPU train workers fit in ``total_cpus`` while Ray Data's decode tasks keep
    the :data:`DECODE_TASK_CPUS` they need (fewer, and the run hangs forever: no clip is ever decoded)."""
    per_run = cfg.train.num_workers * cfg.train.cpus_per_worker
    return math.floor((total_cpus - DECODE_TASK_CPUS) / per_run + 1e-9)


def room_problem(cfg: Config, total_cpus: float, where: str, runs: int = 1, advice: str | None = None) -> str | None:
    """Why ``runs`` runs (Tune trials) of CPU train workers would take so many of ``total_cpus`` that Ray
    Data could never decode, or None. ``advice`` ends the message (default: lower the workers' CPUs)."""
    t = cfg.train
    if runs <= runs_that_fit(cfg, total_cpus):
        return None
    taken = runs * t.num_workers * t.cpus_per_worker
    what = (f"max_concurrent_trials = {runs} trials × " if runs > 1 else "") + \
        "train.num_workers × train.cpus_per_worker = " + (f"{runs} × " if runs > 1 else "") + \
        f"{t.num_workers} × {t.cpus_per_worker:g} = {taken:g} CPUs"
    advice = advice or (f"lower them so that their product is at most {max(total_cpus - DECODE_TASK_CPUS, 0):g} "
                        "(fractional CPUs are fine)")
    return (f"{what} leaves {max(total_cpus - taken, 0):g} of {where}'s {total_cpus:g} for Ray Data's decode "
            f"tasks, which need {DECODE_TASK_CPUS:g}: {advice}")


def one_node_cpus() -> float | None:
    """The CPUs of a cluster of one alive node that runs tasks; None when there are several nodes (an
    autoscaling or multi-node cluster: Ray's scheduler places the rest) or the head runs none (KubeRay's
    ``num-cpus: 0``: workers come from elsewhere). Ray must be up."""
    import ray

    if sum(1 for n in ray.nodes() if n.get("Alive")) != 1:
        return None
    return ray.cluster_resources().get("CPU", 0.0) or None


def check_before_ray(cfg: Config) -> None:
    """What the workers alone would find wrong, refused before Ray starts: a ``train.init_from`` with no
    checkpoint there, and CPU workers that leave the new local Ray's decode tasks no CPU."""
    if cfg.train.init_from:
        try:
            require_checkpoint(cfg.train.init_from, cfg.data)
        except UserError as exc:
            raise ConfigError(f"train.init_from: {exc}") from None
    if not cfg.train.use_gpu and raycompat.starts_local_ray():
        if problem := room_problem(cfg, float(os.cpu_count() or 1), "this machine"):
            raise ConfigError(problem)


def check_room_for_data(cfg: Config) -> None:
    """Refuse a layout where CPU train workers take every CPU of a one-node cluster: Ray Data could never
    decode and the run would hang forever. GPU layouts are left to Ray's scheduler (GPU workers land on GPU
    nodes), as are clusters of several nodes (:func:`one_node_cpus`)."""
    if cfg.train.use_gpu or (cpus := one_node_cpus()) is None:
        return
    if problem := room_problem(cfg, cpus, "this cluster"):
        raise ConfigError(problem)


def val_dataset(cfg: Config, root: str, data: DataSummary | None = None, skip_log=None) -> dict:
    """The first ``train.val_clips`` clips of the val split's usable videos (every listed one without a
    survey), for validation during training; none when there are none."""
    videos = data.usable("val") if data is not None else list_videos(root, "val", cfg.data)
    if not videos:
        return {}
    uris = [v.uri for v in videos]
    return {"val": build_dataset(cfg.data, root, "val", uris=uris, skip_log=skip_log).limit(cfg.train.val_clips)}


def trainer_for(cfg: Config, root: str, name: str, storage: str, data: DataSummary | None = None,
                skip_log=None, callbacks: list | None = None, started: float | None = None):
    """The TorchTrainer of one run; ``callbacks`` are Ray Train callbacks (vidpred tune passes its reporter);
    ``started`` (a ``time.time()``, default now) is when ``train.max_minutes`` starts counting."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    t = cfg.train
    ingest = DataConfig.default_ingest_options()
    ingest.preserve_order = t.deterministic_data  # clip order fixed by the seed: resume continues the same stream
    storage_at, storage_fs = location(storage, cfg.data)  # s3:// through vidpred's resolver, as the data
    resources = {"CPU": t.cpus_per_worker}
    if t.use_gpu:
        resources["GPU"] = t.gpus_per_worker
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config(cfg, started),
        scaling_config=ScalingConfig(num_workers=(t.min_workers, t.num_workers) if t.elastic else t.num_workers,
                                     elastic_resize_monitor_interval_s=t.elastic_resize_interval_s,
                                     use_gpu=t.use_gpu, resources_per_worker=resources,
                                     placement_strategy=t.placement_strategy),
        run_config=RunConfig(name=name, storage_path=storage_at, storage_filesystem=storage_fs, callbacks=callbacks,
                             checkpoint_config=CheckpointConfig(num_to_keep=t.keep_checkpoints),
                             failure_config=FailureConfig(max_failures=t.max_failures)),
        datasets={"train": TrainData(cfg, root, join(storage, name), skip_log=skip_log,
                                     uris=[v.uri for v in data.usable("train")] if data else None),
                  **val_dataset(cfg, root, data, skip_log)},
        # every worker validates on the same clips
        dataset_config=DataConfig(datasets_to_split=["train"], execution_options={"train": ingest}),
        torch_config=TorchConfig(backend="nccl" if t.use_gpu else "gloo"),
    )


def log_file(cfg: Config, storage: str, name: str) -> Path:
    """Where Ray's, Ray Data's and DeepSpeed's own output of a run goes: ``<run dir>/logs/ray.log``, or under
    the local cache when the run lives on S3 (a log file is appended to as it is written)."""
    if is_remote_uri(storage):
        return Path(cfg.data.cache_dir) / "logs" / name / "ray.log"
    return Path(storage) / name / "logs" / "ray.log"


def train(cfg: Config, verbose: bool = False) -> TrainResult:
    """Train on the configured data; returns the run and its last checkpoint. The console shows vidpred's
    lines; Ray's own output goes to :func:`log_file` (``verbose``: shown live as well)."""
    started = time.time()  # train.max_minutes counts from here: start-up is part of what a budget pays for
    cfg = resolve_auto(cfg)  # zero_stage: auto → the planner's pick, or a refusal before anything starts
    storage, name = storage_path(cfg), run_name(cfg)
    announce_resume(cfg, join(storage, name))  # same name and storage: Ray Train continues the run
    check_before_ray(cfg)
    root = dataset_root(cfg)
    data = training_summary(cfg.data, root)  # probes every file; fails here, before any Ray resource is claimed
    logs = log_file(cfg, storage, name)
    with RayOutput(logs, verbose) as output:
        init_ray()
        output.attach()
        check_room_for_data(cfg)
        workers = f"{cfg.train.min_workers}..{cfg.train.num_workers} (elastic)" if cfg.train.elastic \
            else cfg.train.num_workers
        print(f"[vidpred] training {name}: {workers} workers, ZeRO-{cfg.train.zero_stage}, "
              f"{cfg.train.precision}, {cfg.train.steps} steps"
              + (f" or {cfg.train.max_minutes:g} min" if cfg.train.max_minutes else "") + f", data {root}", flush=True)
        print(f"[vidpred] Ray's, Ray Data's and DeepSpeed's own output: {logs}"
              + ("" if verbose else " (--verbose shows it here)"), flush=True)
        skip_log = start_skip_log(name, data)
        result = trainer_for(cfg, root, name, storage, data, skip_log, started=started).fit()
        if result.checkpoint is None:
            raise RuntimeError(f"run {name} finished without a checkpoint")
        summary_uri = finish_run_summary(data, skip_log, join(storage, name), cfg.data)
    return TrainResult(name=name, run_dir=join(storage, name), dataset=root, checkpoint=result.checkpoint,
                       metrics=dict(result.metrics or {}), data_summary=summary_uri, log_file=str(logs))


def preview_path(cfg: Config, result: TrainResult) -> Path:
    """Beside the run when storage is local, else in the local cache."""
    if is_remote_uri(result.run_dir):
        return Path(cfg.data.cache_dir) / "previews" / f"{result.name}.png"
    return Path(result.run_dir) / "prediction.png"
