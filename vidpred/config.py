"""The typed config tree: data, model, loss weights, train.

Everything a run needs is here, validated at the door: a bad value raises
:class:`ConfigError` naming the field and what is allowed, before Ray starts or
any cluster resource is claimed. This module imports nothing else of vidpred.

Sources, later wins: built-in defaults < ``--config FILE.yaml`` < ``--set section.key=value``.
"""

from __future__ import annotations

import copy
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)


def default_cache_dir() -> Path:
    """Where the synthetic set and local runs live unless told otherwise."""
    env = os.environ.get("VIDPRED_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "vidpred"


def parse_bytes(text: str) -> int:
    """``24GiB``, ``80GB``, ``512MiB``, or a plain byte count → bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?)B?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ValueError(f"{text!r}: expected a size such as 24GiB, 80GB or 512MiB")
    base = 1024 if m.group(3) or not m.group(2) else 1000
    return int(float(m.group(1)) * base ** "_KMGT".index(m.group(2).upper() or "_"))


def _size_text(text: str) -> str:
    parse_bytes(text)  # raises on anything that is not a size
    return text


ByteSize = Annotated[str, AfterValidator(_size_text)]  # a size as the user wrote it (24GiB), checked at the door


class UserError(Exception):
    """An expected failure: the user's input or environment is wrong (a config value, a path, a dataset, the
    storage, a checkpoint, the cluster, a missing tool). Its message names the culprit (field, path, URI) and
    what would fix it; the ``vidpred`` command prints it as one line and exits 2, no traceback. Anything
    else that escapes a command is a bug and keeps its traceback."""


class ConfigError(UserError, ValueError):
    """A config value is wrong; the message names the field and what is allowed."""


def _kinds(ann: Any) -> tuple[Any, ...]:
    """The alternatives of an annotation: ``int | Literal["auto"]`` → (int, Literal["auto"])."""
    return typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else (ann,)


def _admits_bool(ann: Any) -> bool:
    return any(k is bool or k is Any or typing.get_origin(k) in (list, dict) for k in _kinds(ann))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, v: Any, info: ValidationInfo) -> Any:
        """``true``/``false`` is not a number or a name: pydantic would read it as 1/0 (``zero_stage: true``
        would be ZeRO-1); refused for every field that is not a boolean."""
        if isinstance(v, bool) and not _admits_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError("a boolean (true/false) where a number or a name is expected")
        return v


def is_remote_uri(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


REMOTE_SCHEMES = ("s3", "s3a")
_BUCKET_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<bucket>[^/]*)(?P<rest>/.*)?$")


def remote_uri_problem(uri: str) -> str | None:
    """Why ``uri`` (remote, ``scheme://...``) cannot be used, or None: the scheme must be one vidpred
    reads and a bucket must be named (``s3://`` alone would pass here and fail deep in pyarrow)."""
    m = _BUCKET_URI.match(uri)
    if m is None or m["scheme"].lower() not in REMOTE_SCHEMES:
        return f"unsupported scheme in {uri!r}; allowed: a local path, file://PATH or s3://bucket/prefix"
    if not m["bucket"] or m["bucket"] in (".", ".."):
        return f"{uri!r} names no bucket; expected s3://bucket/prefix"
    return None


def folder_problem(path: str | os.PathLike) -> str | None:
    """Why a local folder cannot be made or used at ``path``, or None: the path itself, or the nearest of
    its parents that exists, is a file (mkdir would fail with NotADirectoryError deep in a command)."""
    p = Path(path).expanduser()
    for candidate in (p, *p.parents):
        if candidate.exists() or candidate.is_symlink():
            if candidate.is_dir():
                return None
            what = "a broken symbolic link" if not candidate.exists() else "a file"
            return f"{str(candidate)!r} is {what}, where a folder is expected"
    return None


def _remote(v: str) -> bool:
    """Whether ``v`` is a remote URI, one of a usable form (ValueError naming the problem otherwise)."""
    if not is_remote_uri(v):
        return False
    if problem := remote_uri_problem(v):
        raise ValueError(problem)
    return True


def _local_or_remote_folder(v: str | None) -> str | None:
    """A storage location: ``s3://bucket/prefix`` with a bucket, or a local path that is (or can become) a
    folder."""
    if v is None or _remote(v):
        return v
    if problem := folder_problem(v.removeprefix("file://")):
        raise ValueError(problem)
    return v


class DataConfig(_Section):
    uri: str | None = Field(
        None, description="BDD100K-layout tree: a local directory or s3://bucket/prefix. "
        "None: a synthetic dashcam set generated (once) in cache_dir.")
    cache_dir: str = Field(default_factory=lambda: str(default_cache_dir()))
    synth_clips: int = Field(8, ge=1, le=100_000, description="train clips of the synthetic set (val gets a quarter, at least 1)")
    synth_seconds: float = Field(4.0, gt=0, le=600)
    synth_size: str = Field("320x180", pattern=r"^\d+x\d+$", description="WIDTHxHEIGHT of the synthetic videos")
    fps: float = Field(10.0, gt=0, le=120, description="training frame rate; videos are resampled to it")
    height: int = Field(64, ge=8, le=2160)
    width: int = Field(64, ge=8, le=3840)
    context: int = Field(4, ge=1, le=64, description="frames the model sees")
    future: int = Field(4, ge=1, le=64, description="frames the model predicts")
    stride: int = Field(4, ge=1, le=10_000, description="frames (at the training fps) between clip starts")
    batch_size: int = Field(
        4, ge=1, le=4096, description="clips per worker per optimizer step; with train.grad_accum > 1 they go "
        "through the model train.grad_accum micro-batches at a time (Config.micro_batch)")
    s3_endpoint: str | None = Field(
        None, description="S3 endpoint URL, e.g. http://127.0.0.1:8333; None: AWS_ENDPOINT_URL or AWS itself")
    s3_max_attempts: int = Field(10, ge=1, le=100, description="tries per S3 request (backoff with jitter)")
    probe: Literal["full", "header"] = Field(
        "full", description="check of every video before training: full = header + first frame + last second "
        "(catches truncation; ~0.5-1 MB read per video), header = the container header only")
    probe_threads: int = Field(16, ge=1, le=512, description="parallel checks of the videos before training")
    probe_index: Literal["use", "refresh", "off"] = Field(
        "use", description="probe results kept between runs, per file with its size and modification time: use = "
        "reuse the entries of unchanged files and probe only new or changed ones; refresh = probe every file again "
        "and rewrite the index; off = probe every file, neither read nor write an index")
    probe_index_dir: str | None = Field(
        None, description="where probe indexes live: a local directory or s3://bucket/prefix; None: "
        "<cache_dir>/probe-index")
    shuffle_buffer: ByteSize = Field(
        "128MiB", description="memory per worker for the clips shuffled before they are batched (a video's clips "
        "arrive together; a buffer of many videos' clips mixes them): the buffer holds this much / the bytes of "
        "one clip, at least data.batch_size clips; training starts once it is full (or the shard is read)")

    @field_validator("cache_dir")
    @classmethod
    def _cache_is_a_folder(cls, v: str) -> str:
        if problem := folder_problem(v):
            raise ValueError(problem)
        return v

    @field_validator("uri")
    @classmethod
    def _uri_exists(cls, v: str | None) -> str | None:
        if v is None or _remote(v):
            return v
        path = Path(v.removeprefix("file://")).expanduser()
        if not path.is_dir():
            raise ValueError(f"local path {str(path)!r} does not exist or is not a directory; "
                             "allowed: an existing directory, s3://bucket/prefix, or null for the synthetic set")
        return str(path.resolve())

    @field_validator("probe_index_dir")
    @classmethod
    def _index_dir_is_a_folder(cls, v: str | None) -> str | None:
        return _local_or_remote_folder(v)

    @property
    def clip_frames(self) -> int:
        return self.context + self.future

    @property
    def clip_bytes(self) -> int:
        """Bytes of one uint8 clip as the trainer receives it."""
        return self.clip_frames * self.height * self.width * 3

    @property
    def shuffle_clips(self) -> int:
        """Clips in each worker's shuffle buffer: ``shuffle_buffer`` / :attr:`clip_bytes`, at least a batch."""
        return max(self.batch_size, parse_bytes(self.shuffle_buffer) // self.clip_bytes)


# What ``model.size`` fills in (every key not given explicitly). Generator / discriminator parameters:
# tiny 0.66 M / 0.24 M (CI), base 25.8 M / 3.8 M, large 335 M / 15 M (the one meant to need ZeRO on a 24 GB GPU
# at 256x256: see docs/model.md). Counts with the clip discriminator on, as printed at the start of a run.
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(channels=16, z_channels=8, levels=3, blocks=1, rnn="gru", rnn_layers=1, d_channels=16),
    "base": dict(channels=72, z_channels=16, levels=3, blocks=2, rnn="lstm", rnn_layers=2, d_channels=64),
    "large": dict(channels=208, z_channels=32, levels=4, blocks=3, rnn="lstm", rnn_layers=2, d_channels=128),
}


class ModelConfig(_Section):
    size: Literal["tiny", "base", "large"] = Field(
        "tiny", description="preset: fills every model key below that is not given explicitly (MODEL_SIZES)")
    channels: int = Field(16, ge=4, le=1024, description="generator base channels")
    z_channels: int = Field(8, ge=1, le=512, description="latent map channels")
    levels: int = Field(3, ge=1, le=6, description="stride-2 stages; height and width must be multiples of 2**levels")
    blocks: int = Field(1, ge=1, le=8, description="conv blocks per resolution in encoder and decoder")
    rnn: Literal["gru", "lstm"] = Field("gru", description="recurrent cell of the latent dynamics")
    rnn_layers: int = Field(1, ge=1, le=8, description="stacked recurrent cells")
    d_channels: int = Field(16, ge=4, le=1024, description="discriminator base channels")
    clip_discriminator: bool = Field(True, description="add the spatio-temporal (3D conv) clip discriminator")
    spectral_norm: bool = Field(False, description="spectral norm on the discriminators' convs (then no GroupNorm)")
    gan_loss: Literal["lsgan", "hinge"] = "lsgan"
    warp_from: Literal["previous", "context_and_previous"] = Field(
        "context_and_previous", description="what the decoder warps into the next frame: previous = the frame before "
        "(fed back in the future steps, so its bilinear resampling compounds into blur step after step); "
        "context_and_previous = also the last context frame, real at every step, with a flow of its own; the two "
        "warps and new pixels are mixed by a softmax mask (SAVP composites context images the same way)")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_size(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset = MODEL_SIZES.get(data.get("size", "tiny"))
        return data if preset is None else {**preset, **data}  # an unknown size fails on the field itself

    @property
    def spatial_multiple(self) -> int:
        return 2 ** self.levels


SCHEDULED_WEIGHTS = ("w_rec", "w_kl", "w_adv", "w_feat")
# train.activation_checkpointing, least memory saved first (vidpred.model.vpgan documents what each recomputes)
Checkpointing = Literal["off", "step", "block"]
CHECKPOINTING: tuple[str, ...] = typing.get_args(Checkpointing)


class WeightPhase(_Section):
    """From optimizer step ``step`` on, these loss weights (an unset one keeps its ``loss.w_*`` value)."""
    step: int = Field(ge=0, le=100_000_000)
    w_rec: float | None = Field(None, allow_inf_nan=False, ge=0)
    w_kl: float | None = Field(None, allow_inf_nan=False, ge=0)
    w_adv: float | None = Field(None, allow_inf_nan=False, ge=0)
    w_feat: float | None = Field(None, allow_inf_nan=False, ge=0)


class LossConfig(_Section):
    w_rec: float = Field(allow_inf_nan=False, default=1.0, ge=0, description="L1 pixel loss weight")
    w_kl: float = Field(allow_inf_nan=False, default=1e-3, ge=0, description="KL(posterior || learned prior) weight")
    w_adv: float = Field(allow_inf_nan=False, default=1e-4, ge=0, description="adversarial (generator side) weight")
    w_feat: float = Field(allow_inf_nan=False, default=1e-3, ge=0, description="discriminator feature-matching weight")
    w_cycle: float = Field(allow_inf_nan=False, default=0.0, ge=0,
                           description="optional fifth term: L1 of the context predicted backwards from the prediction")
    gan_paths: Literal["posterior", "both"] = Field(
        "both", description="which predictions the adversarial and feature-matching terms (and D) see: posterior = "
        "the teacher-forced future drawn with posterior z only (VAE-GAN); both = also the future imagined from the "
        "prior with the model's own predictions fed back, as inference runs (SAVP's GAN path); w_adv and w_feat "
        "then weigh the mean over both paths")
    w_rec_prior: float = Field(
        allow_inf_nan=False, default=0.0, ge=0,
        description="L1 of the prior path's prediction (free running, own predictions fed back) to the truth; "
        "needs gan_paths=both; 0 as in SAVP, whose prior path gets only the adversarial terms")
    kl_anneal: Literal["none", "linear"] = Field(
        "none", description="linear: the KL weight ramps from 0 at kl_anneal_start to w_kl at kl_anneal_end (steps)")
    kl_anneal_start: int = Field(0, ge=0, le=100_000_000)
    kl_anneal_end: int = Field(0, ge=0, le=100_000_000)
    schedule: list[WeightPhase] = Field(
        default_factory=list, description="piecewise-constant weights over training, e.g. a PBT schedule from "
        "vidpred tune: [{step: 0, w_adv: 0.01}, {step: 200, w_adv: 0.02}]; steps strictly increasing")

    @model_validator(mode="after")
    def _anneal_range(self) -> "LossConfig":
        if self.w_rec_prior and self.gan_paths != "both":
            raise ValueError(f"loss.w_rec_prior = {self.w_rec_prior:g} needs loss.gan_paths = both (the prior path "
                             "is only run then); allowed: w_rec_prior 0, or gan_paths both")
        if self.kl_anneal == "linear" and self.kl_anneal_end <= self.kl_anneal_start:
            raise ValueError(f"loss.kl_anneal_end = {self.kl_anneal_end}: must be greater than loss.kl_anneal_start "
                             f"= {self.kl_anneal_start} when loss.kl_anneal is linear")
        steps = [phase.step for phase in self.schedule]
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"loss.schedule steps {steps}: must be strictly increasing")
        return self

    def at(self, step: int) -> "LossConfig":
        """The weights in force at optimizer step ``step`` (``schedule`` applied; self when there is none)."""
        phases = [phase for phase in self.schedule if phase.step <= step]
        if not phases:
            return self
        return self.model_copy(update={k: v for k, v in phases[-1].model_dump(include=set(SCHEDULED_WEIGHTS)).items()
                                       if v is not None})


class TrainConfig(_Section):
    num_workers: int = Field(
        2, ge=1, le=4096, description="Ray Train workers; with train.min_workers, the most an elastic run grows to")
    min_workers: int | None = Field(
        None, ge=1, le=4096, description="an elastic run: Ray Train runs it with train.min_workers to "
        "train.num_workers workers, shrinking when a node is lost and growing when nodes come back, each time "
        "from the latest checkpoint resharded to the new number (docs/training.md, \"Elastic runs\"); None: a "
        "fixed number, train.num_workers")
    elastic_resize_interval_s: float = Field(
        60.0, ge=0, le=86_400, description="an elastic run below train.num_workers workers checks this often "
        "whether the cluster has room for more and, if so, restarts larger from its latest checkpoint (Ray "
        "Train's elastic_resize_monitor_interval_s)")
    cpus_per_worker: float = Field(
        0.5, gt=0, le=512,
        description="fractional on purpose: whole-CPU workers on a small box leave Ray Data nothing and hang")
    gpus_per_worker: float = Field(1.0, ge=0, le=16, description="used only when use_gpu")
    use_gpu: bool = False
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="how Ray places the workers' bundles on nodes (ScalingConfig.placement_strategy): PACK "
        "as few nodes as possible, SPREAD over as many as possible (both best effort); STRICT_PACK all on one "
        "node, STRICT_SPREAD each on a different node (these never fall back: the run waits for nodes that fit)")
    zero_stage: int | Literal["auto"] = Field(
        2, description="DeepSpeed ZeRO stage 0-3 for both engines, or auto: the memory planner picks the layout that "
        "fits train.device_memory and is fastest by its estimate (stage, offload_optimizer, grad_accum, "
        "activation_checkpointing; those four keys are then its choice) at the configured data.batch_size "
        "(vidpred plan shows its table)")
    offload_optimizer: bool = Field(False, description="ZeRO-Offload: optimizer states and step on the CPU (stage ≥ 1)")
    device_memory: ByteSize | None = Field(
        None, description="memory per device for zero_stage=auto, e.g. 24GiB; None: the GPU's, or host RAM / workers")
    grad_accum: int = Field(
        1, ge=1, le=1024, description="micro-batches per optimizer step: data.batch_size clips per step go through "
        "the model data.batch_size / grad_accum at a time (must divide data.batch_size)")
    activation_checkpointing: Checkpointing = Field(
        "off", description="activations recomputed in backward instead of stored (less memory, more compute): off; "
        "step = every step in time of the generator (encoding a frame, the latent step, decoding a frame) is "
        "recomputed; block = step, and within it every conv stage on its own, and every discriminator layer")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="fp16 is not offered: it fails on CPU")
    lr_g: float = Field(2e-4, gt=0, le=1)
    lr_d: float = Field(2e-4, gt=0, le=1)
    grad_clip: float = Field(1.0, ge=0, description="0 disables clipping")
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="an exponential moving average of the generator's weights, decay per step "
        "(e.g. 0.999: about the last 1,000 steps), is what validation, vidpred eval and vidpred export use; costs one "
        "fp32 copy of the generator per rank (divided by the workers at ZeRO-3); None: the weights as trained")
    steps: int = Field(60, ge=1, le=100_000_000,
                       description="optimizer steps per worker (each of train.grad_accum micro-batches)")
    max_minutes: float | None = Field(
        None, gt=0, le=10_000_000, description="time budget of one invocation, counted from the command's start "
        "(start-up included): the run ends at the first logging interval past it, with a validation and a final "
        "checkpoint, even before train.steps; --resume gets a new budget. None: no budget")
    log_every: int = Field(
        10, ge=1, description="steps per logging interval: a progress line, a report to Ray Train (Tune's schedulers "
        "see these) and TensorBoard means; checkpoints and validations report too")
    checkpoint_every: int = Field(30, ge=1)
    keep_checkpoints: int = Field(2, ge=1, le=1000)
    checkpoint_upload: Literal["async", "sync"] = Field(
        "async", description="how a checkpoint reaches train.storage_path: async = Ray Train uploads it in the "
        "background while training goes on (registered once complete; the next report point waits for it if it "
        "is not done by then), sync = the workers wait for the whole upload at the checkpoint step")
    max_failures: int = Field(
        2, ge=-1, le=10_000, description="worker failures (a lost node, a killed process) survived by restarting "
        "every worker from the last checkpoint (Ray Train's FailureConfig); -1: no limit, 0: the first ends the run")
    nonfinite_patience: int = Field(
        3, ge=1, le=100_000, description="steps in a row with a NaN/inf loss (each skipped and counted) after "
        "which the last checkpoint is restored and both learning rates lowered")
    nonfinite_lr_factor: float = Field(
        0.5, gt=0, lt=1, description="what both learning rates are multiplied by at each such restore")
    nonfinite_max_restores: int = Field(
        3, ge=0, le=1000, description="restores for non-finite losses before the run stops with an error")
    deterministic_data: bool = Field(
        True, description="clips reach each worker in an order fixed by the seed (Ray Data preserve_order), so a "
        "resumed or restarted run continues the same data stream; false: faster when some files decode slowly")
    seed: int = Field(0, ge=0)
    storage_path: str | None = Field(None, description="local dir or s3:// URI for runs; None: <cache_dir>/runs")
    init_from: str | None = Field(
        None, description="checkpoint (local path or s3:// URI) to start from — weights, optimizers and step — when "
        "the run has none of its own yet (vidpred tune's PBT continues each trial this way)")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="run name; None: vidpred-<time>")
    val_every: int = Field(30, ge=1, description="steps between validations (PSNR/SSIM vs copy-last, TensorBoard grid)")
    val_clips: int = Field(8, ge=1, le=10_000, description="validation clips (the first of the val split)")
    tensorboard: bool = Field(True, description="rank 0 writes TensorBoard events under <run dir>/tensorboard")

    @field_validator("zero_stage")
    @classmethod
    def _stage_range(cls, v: int | str) -> int | str:
        if v != "auto" and not 0 <= v <= 3:
            raise ValueError("must be 0, 1, 2, 3 or auto")
        return v

    @field_validator("storage_path")
    @classmethod
    def _storage_is_a_folder(cls, v: str | None) -> str | None:
        return _local_or_remote_folder(v)

    @field_validator("init_from")
    @classmethod
    def _init_from_uri(cls, v: str | None) -> str | None:
        """The form only; whether a checkpoint is there is checked before Ray starts (it may be on S3)."""
        if v is None or _remote(v):
            return v
        return str(Path(v.removeprefix("file://")).expanduser().resolve())  # workers open it by absolute path

    @model_validator(mode="after")
    def _offload_needs_zero(self) -> "TrainConfig":
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("train.offload_optimizer needs train.zero_stage 1, 2, 3 or auto (ZeRO-0 keeps the "
                             "optimizer on the device)")
        return self

    @model_validator(mode="after")
    def _elastic_range(self) -> "TrainConfig":
        if self.min_workers is not None and self.min_workers > self.num_workers:
            raise ValueError(f"train.min_workers = {self.min_workers}: must be at most train.num_workers = "
                             f"{self.num_workers} (the range an elastic run spans), or null for a fixed size")
        return self

    @property
    def elastic(self) -> bool:
        """Whether the run may change size (train.min_workers set below train.num_workers)."""
        return self.min_workers is not None and self.min_workers < self.num_workers


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> "Config":
        m = self.model.spatial_multiple
        for name in ("height", "width"):
            v = getattr(self.data, name)
            if v % m:
                raise ValueError(f"data.{name} = {v}: must be a multiple of {m} "
                                 f"(2**model.levels with model.levels = {self.model.levels})")
        if self.data.batch_size % self.train.grad_accum:
            raise ValueError(f"data.batch_size = {self.data.batch_size}: must be a multiple of train.grad_accum = "
                             f"{self.train.grad_accum} (the clips of one optimizer step, split into equal micro-batches)")
        return self

    @property
    def micro_batch(self) -> int:
        """Clips per worker per forward/backward: data.batch_size / train.grad_accum."""
        return self.data.batch_size // self.train.grad_accum

    def at_world(self, world: int) -> "Config":
        """The config a worker group of ``world`` workers trains with. data.batch_size and train.grad_accum are
        those of train.num_workers workers; with fewer (an elastic run that shrank) each worker takes
        num_workers / world times the clips per step in as many more micro-batches of the same size, so the
        global batch stays num_workers × data.batch_size — when world divides num_workers × train.grad_accum.
        Otherwise the config is kept as it is and the global batch is world × data.batch_size."""
        t = self.train
        if world == t.num_workers or (t.num_workers * t.grad_accum) % world:
            return self
        scale = t.num_workers * t.grad_accum // world  # micro-batches per step at this world size
        return self.model_copy(update={
            "train": t.model_copy(update={"grad_accum": scale}),
            "data": self.data.model_copy(update={"batch_size": self.micro_batch * scale})})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _describe(err: dict[str, Any]) -> str:
    field = ".".join(str(p) for p in err["loc"]) or "config"
    if err["type"] == "extra_forbidden":
        return f"{field}: unknown key"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error" and "loc" in err and not err["loc"]:
        return msg
    shown = err.get("input")
    return f"{field} = {shown!r}: {msg}" if not isinstance(shown, dict) else f"{field}: {msg}"


def _section_model(ann: Any) -> type[BaseModel] | None:
    """The model inside an annotation: M, M | None, list[M] or dict[str, M]; None when there is none."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    return next(filter(None, map(_section_model, typing.get_args(ann))), None)


def _allowed_keys(loc: tuple, model: type[BaseModel] | None = None) -> list[str]:
    model = model or Config
    for part in loc[:-1]:
        if part not in model.model_fields:  # a list index or a dict key inside the field before
            continue
        model = _section_model(model.model_fields[part].annotation)
        if model is None:
            return []
    return list(model.model_fields)


def validate(raw: dict[str, Any]) -> Config:
    """Build a Config from plain data; raise ConfigError listing every bad field."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, Config, "invalid config") from None


def config_error(exc: ValidationError, model: type[BaseModel], title: str) -> ConfigError:
    """A pydantic error as a ConfigError: one line per bad field, unknown keys with the allowed ones."""
    lines = []
    for err in exc.errors():
        line = _describe(err)
        if err["type"] == "extra_forbidden":
            line += f"; allowed: {', '.join(_allowed_keys(err['loc'], model))}"
        lines.append(line)
    return ConfigError(f"{title}:\n  " + "\n  ".join(lines))


NULLS = ("", "null", "none", "~")


def _field_at(parts: list[str], model: type[BaseModel]) -> Any:
    """The pydantic field that a dotted key names (``["train", "name"]``), or None (unknown key, or inside a
    list or mapping)."""
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if i == len(parts) - 1:
            return field
        inner = field.annotation
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return None


def _names_only(ann: Any) -> bool:
    """Every alternative of the annotation is text: str, or a Literal of strings (None aside)."""
    kinds = [k for k in _kinds(ann) if k is not type(None)]
    return bool(kinds) and all(k is str or (typing.get_origin(k) is typing.Literal
                                            and all(isinstance(v, str) for v in typing.get_args(k))) for k in kinds)


def parse_assignment(assignment: str, model: type[BaseModel] | None = None) -> dict[str, Any]:
    """``section.key=value`` → ``{section: {key: value}}``, the value read by the field's type: for a text
    field (``train.name``, ``data.uri``) the text as given (``001`` stays "001"), ``null`` / nothing → None
    where None is allowed; for any other field (numbers, booleans, lists) as YAML, checked by validation."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(f"--set {assignment!r}: expected section.key=value, e.g. train.steps=100")
    parts = key.strip().split(".")
    field = _field_at(parts, model or Config)
    text = value.strip()
    if field is not None and type(None) in _kinds(field.annotation) and text.lower() in NULLS:
        parsed: Any = None
    elif field is not None and _names_only(field.annotation):
        parsed = text
    else:
        try:
            parsed = yaml.safe_load(value) if text else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {assignment!r}: the value is not valid YAML ({yaml_problem(exc)})") from None
    for part in reversed(parts):
        parsed = {part: parsed}
    return parsed


def lay_over(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` laid over it, section by section (nested mappings merge, other values replace);
    neither input is changed. When ``top`` picks a ``model.size``, the model keys ``base`` holds at its own
    preset's values are dropped, so the new preset fills them: a dumped config (every key written out) plus
    ``--set model.size=large`` gets large's channels, not tiny's; keys set to other values stay."""
    top_model, base_model = top.get("model"), base.get("model")
    if isinstance(top_model, dict) and "size" in top_model and isinstance(base_model, dict):
        preset = MODEL_SIZES.get(base_model.get("size", "tiny"), {})
        base = {**base, "model": {k: v for k, v in base_model.items() if k not in preset or preset[k] != v}}
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = lay_over(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (``expected ',' or ']', line 2 column 1``)."""
    mark = getattr(exc, "problem_mark", None)
    where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(exc, 'problem', None) or exc}{where}"


def read_yaml_mapping(path: str | os.PathLike, flag: str, of: str = "keys") -> dict[str, Any]:
    """A YAML file whose top level is a mapping; ConfigError naming ``flag`` and the file otherwise."""
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "file does not exist"
        raise ConfigError(f"{flag} {str(p)!r}: {what}")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{flag} {str(p)!r}: not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML") from None
    except OSError as exc:
        raise ConfigError(f"{flag} {str(p)!r}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{flag} {str(p)!r}: not valid YAML ({yaml_problem(exc)})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{flag} {str(p)!r}: top level must be a mapping of {of}")
    return loaded or {}


def layered(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
            base: dict[str, Any] | None = None, layers: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
            label: str = "--config") -> dict[str, Any]:
    """The raw config, each source laid over the ones before it (:func:`lay_over`): ``base`` (plain data,
    e.g. a checkpoint's config; left unchanged) < the YAML file at ``path`` (named ``label`` in messages) <
    each of ``layers`` (mappings of sections) < ``section.key=value`` ``overrides``. Not validated: the
    defaults fill what is missing in :func:`validate`."""
    raw = copy.deepcopy(base or {})
    if path:
        raw = lay_over(raw, read_yaml_mapping(path, label, f"sections ({', '.join(Config.model_fields)})"))
    for layer in layers:
        raw = lay_over(raw, layer)
    for assignment in overrides:
        raw = lay_over(raw, parse_assignment(assignment))
    return raw


def load(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
         base: dict[str, Any] | None = None) -> Config:
    """Defaults < ``base`` < YAML file < ``section.key=value`` overrides (:func:`layered`); validated."""
    return validate(layered(path, overrides, base))
