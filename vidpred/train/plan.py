"""Memory planner: per-GPU bytes and an estimated time of one optimizer step before a run launches, and the
fastest layout that fits.

Given the batch the user asks for (``data.batch_size`` clips per worker per optimizer step) it tries every
micro-batch that divides it (``grad_accum`` = batch / micro-batch), every ``train.activation_checkpointing``
mode, each ZeRO stage (0-3) with or without ``offload_optimizer: cpu``, and adds up, per rank and for both
engines (G and D):

* model states — params, grads, optimizer (AdamW: two moments; with bf16 also the fp32 master copy),
  divided by the world size the way the stage partitions them (ZeRO paper, Rajbhandari et al. 2020):
  stage 1 partitions the optimizer, stage 2 also the gradients, stage 3 also the parameters;
  offload moves the optimizer partition (and its fp32 work) to host memory; with ``train.ema_decay`` the
  generator's averaged weights (fp32) count as params;
* DeepSpeed's communication buckets (stage 1/2: reduce + all-gather buckets; stage 3: prefetch and
  live-parameter limits and the reduce bucket), capped by the model size (vidpred.train.engines caps
  DeepSpeed's bucket sizes so);
* activations, measured — not guessed — by running one GAN step's passes (:func:`step_passes`), forward
  *and* backward, with the real modules on the ``meta`` device at the target resolution and micro-batch (no
  memory is used): every storage a kernel creates is tracked until it is freed, and the peak of what is
  alive at once, parameters and their gradients left out, is the figure (:func:`profile`). Checkpointed
  regions are recomputed in that backward as in a real one, so each checkpointing mode is counted as it
  runs. Times ``ACTIVATION_SLACK`` for what the allocator holds beyond live tensors;
* a fixed runtime overhead (CUDA context and allocator slack).

The step time estimate (:func:`step_seconds`) exists to rank layouts, not to predict a wall clock: the same
meta run counts the step's FLOPs (recomputation included), at a nominal device rate, plus a fixed cost per
micro-batch, the ZeRO stage's collectives over a nominal link (stage 2 reduces and stage 3 also gathers
parameters once per micro-batch) and, with offload, the optimizer's round trip to the host.

Parameter counts come from building the real modules on the ``meta`` device too, so a 300 M-parameter
model is planned in seconds without allocating it.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode  # the documented base of dispatch modes
from torch.utils.flop_counter import flop_registry

from vidpred.config import CHECKPOINTING, Config, ConfigError, parse_bytes
from vidpred.train.engines import bucket_elements

GiB = 2**30
RUNTIME_OVERHEAD = int(0.75 * GiB)       # CUDA context + allocator fragmentation, typical for PyTorch 2.x
STAGE3_PREFETCH_ELEMENTS = int(5e7)     # stage3_prefetch_bucket_size default
STAGE3_LIVE_ELEMENTS = int(1e9)         # stage3_max_live_parameters default
# Peak memory beyond the peak of live tensors (the allocator's caching and fragmentation): a margin over the
# ratio benchmarks/plan_check.py measures on CPU (benchmarks/results/plan_check.json, docs/training.md).
ACTIVATION_SLACK = 1.1
# Cheapest first: less communication, no host round trips.
LAYOUTS = ((0, False), (1, False), (2, False), (3, False), (2, True), (3, True))
# Nominal figures for ranking layouts by step time (step_seconds): achieved conv FLOP/s of one accelerator
# (fp32 convolutions run as TF32 on GPUs by default), a collective's bandwidth per rank, host <-> device
# copies, the host optimizer's rate, and the fixed cost of one micro-batch (launches, Python, hooks).
DEVICE_FLOPS = {"bf16": 100e12, "fp32": 50e12}
LINK_BYTES_PER_S = 25e9
HOST_BYTES_PER_S = 25e9
HOST_ADAM_PARAMS_PER_S = 1e9
MICRO_BATCH_SECONDS = 0.01


@dataclass(frozen=True)
class Profile:
    """What one micro-batch of a GAN step costs: peak activation bytes and FLOPs (forward and backward)."""
    activations: int
    flops: int


@dataclass(frozen=True)
class Estimate:
    stage: int
    offload: bool
    micro_batch: int
    params: int
    grads: int
    optimizer: int
    buckets: int
    activations: int
    grad_accum: int = 1
    checkpointing: str = "off"
    seconds: float = 0.0
    overhead: int = RUNTIME_OVERHEAD

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.buckets + self.activations + self.overhead

    @property
    def layout(self) -> str:
        return f"ZeRO-{self.stage}" + (" + offload" if self.offload else "")

    def describe(self) -> str:
        return (f"{self.layout}, micro-batch {self.micro_batch} x grad_accum {self.grad_accum}, activation "
                f"checkpointing {self.checkpointing}")


def _modules(cfg: Config, checkpointing: str = "off"):
    from vidpred.model import Discriminators, Generator

    with torch.device("meta"):
        return Generator(cfg.model, checkpointing), Discriminators(cfg.model, checkpointing)


def param_counts(cfg: Config) -> tuple[int, int]:
    """(generator, discriminators) parameter counts, from modules built on the meta device."""
    g, d = _modules(cfg)
    return sum(p.numel() for p in g.parameters()), sum(p.numel() for p in d.parameters())


class _StepMeter(TorchDispatchMode):
    """While active: the peak bytes of the storages kernels create, alive at once, and the FLOPs of the
    kernels torch's FLOP counter knows (convolutions, matmuls). What :meth:`leave_out` names is not counted,
    nor any view of it: parameters and the input clips (made before), a gradient once it lands in a
    parameter's ``.grad`` (model states, counted apart). (torch's FlopCounterMode itself keeps tensors alive
    through its module hooks, which would inflate the peak: its per-kernel formulas are used here instead.)"""

    def __init__(self):
        super().__init__()
        self.live = self.peak = self.flops = 0
        self.tracked: dict[int, tuple[int, weakref.finalize]] = {}  # storage -> (bytes, its end)
        self.left_out: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if (count := flop_registry.get(func._overloadpacket)) is not None:
            self.flops += count(*args, **kwargs, out_val=out)
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage._cdata
                if key not in self.tracked and key not in self.left_out:  # else a view, or an in-place result
                    self.tracked[key] = (storage.nbytes(), weakref.finalize(storage, self._freed, key))
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
        return out

    def _freed(self, key: int) -> None:
        self.live -= self.tracked.pop(key)[0]

    def leave_out(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self.left_out:
            return
        if (entry := self.tracked.pop(key, None)) is not None:
            entry[1].detach()
            self.live -= entry[0]
        self.left_out.add(key)
        weakref.finalize(storage, self.left_out.discard, key)  # its address may serve a new storage later


def step_passes(g: torch.nn.Module, d: torch.nn.Module, frames: torch.Tensor, context: int, prior_path: bool) -> None:
    """One GAN step's passes as :func:`vidpred.train.step.gan_step` runs them, losses aside: G forward (with
    the prior path when ``loss.gan_paths`` is both); D forward on cat([real, fakes.detach()]) and its
    backward; D frozen, D forward on cat([real, fakes]); G backward through it."""
    out = g(frames, context, prior_path=prior_path)
    fakes = [torch.cat([frames[:, :context], p], dim=1) for p in (out.pred, out.prior_pred) if p is not None]
    logits, _feats = d(torch.cat([frames, *(f.detach() for f in fakes)]), context)
    sum(x.float().mean() for x in logits).backward()
    d.requires_grad_(False)
    fake_logits, fake_feats = d(torch.cat([frames, *fakes]), context)
    g_loss = sum(x.float().mean() for x in fake_logits) + sum(f.float().mean() for per_d in fake_feats for f in per_d)
    (g_loss + out.pred.float().mean() + out.kl.float()).backward()
    d.requires_grad_(True)


def _measure(cfg: Config, checkpointing: str, micro_batch: int) -> Profile:
    """:func:`step_passes` on the meta device, metered."""
    g, d = _modules(cfg, checkpointing)
    dtype = torch.bfloat16 if cfg.train.precision == "bf16" else torch.float32
    g, d = g.to(dtype), d.to(dtype)
    frames = torch.zeros(micro_batch, cfg.data.clip_frames, 3, cfg.data.height, cfg.data.width,
                         device="meta", dtype=dtype)
    meter = _StepMeter()
    meter.leave_out(frames)
    for p in (*g.parameters(), *d.parameters()):
        meter.leave_out(p)
        p.register_post_accumulate_grad_hook(lambda p: meter.leave_out(p.grad))
    with meter:
        step_passes(g, d, frames, cfg.data.context, cfg.loss.gan_paths == "both")
    return Profile(activations=meter.peak, flops=meter.flops)


@functools.lru_cache(maxsize=256)
def _profile_cached(key: str, checkpointing: str, micro_batch: int) -> Profile:
    return _measure(Config.model_validate_json(key), checkpointing, micro_batch)


def profile(cfg: Config, micro_batch: int, checkpointing: str | None = None) -> Profile:
    """:class:`Profile` of one micro-batch (activations before ``ACTIVATION_SLACK``), measured for each
    micro-batch: what does not scale with it (gradient buffers of the weights, for one) makes the peak only
    nearly linear in the micro-batch, and a line through two measurements can undershoot."""
    mode = cfg.train.activation_checkpointing if checkpointing is None else checkpointing
    key = cfg.model_dump_json(include={"data": {"height", "width", "context", "future"}, "model": True,
                                       "train": {"precision"}, "loss": {"gan_paths"}})  # what the measurement depends on
    return _profile_cached(key, mode, micro_batch)


def activation_bytes(cfg: Config, micro_batch: int, checkpointing: str | None = None) -> int:
    """Peak bytes of activations in one GAN step at ``micro_batch`` (default mode: the config's), slack included."""
    return int(ACTIVATION_SLACK * profile(cfg, micro_batch, checkpointing).activations)


def model_state_bytes(n_params: int, stage: int, offload: bool, world: int, bf16: bool) -> tuple[int, int, int]:
    """(params, grads, optimizer) bytes per rank on the accelerator for one engine."""
    p_bytes = 2 if bf16 else 4
    optim_per_param = (4 + 8) if bf16 else 8          # bf16: fp32 master + Adam m, v; fp32: m, v
    params = n_params * p_bytes // (world if stage >= 3 else 1)
    grads = n_params * p_bytes // (world if stage >= 2 else 1)
    optimizer = 0 if offload else n_params * optim_per_param // (world if stage >= 1 else 1)
    return params, grads, optimizer


def bucket_bytes(n_params: int, stage: int, bf16: bool) -> int:
    p_bytes = 2 if bf16 else 4
    if stage in (1, 2):
        return 2 * bucket_elements(n_params) * p_bytes
    if stage == 3:
        return (min(STAGE3_PREFETCH_ELEMENTS, n_params) + min(STAGE3_LIVE_ELEMENTS, n_params)
                + bucket_elements(n_params)) * p_bytes  # + the reduce bucket, allocated at init
    return 0


def step_seconds(cfg: Config, stage: int, offload: bool, micro_batch: int, world: int, checkpointing: str,
                 n_params: int, flops: int) -> float:
    """Estimated seconds of one optimizer step (see the module): for ranking layouts, with nominal figures."""
    accum = cfg.data.batch_size // micro_batch
    p_bytes = (2 if cfg.train.precision == "bf16" else 4) * n_params
    compute = accum * (flops / DEVICE_FLOPS[cfg.train.precision] + MICRO_BATCH_SECONDS)
    if stage <= 1:
        moved = 2 * p_bytes                                  # one all-reduce of the gradients per step
    elif stage == 2:
        moved = accum * p_bytes + p_bytes                    # reduce-scatter per micro-batch, gather after the step
    else:  # gather for forward and backward (and a recomputation) and reduce-scatter, per micro-batch
        moved = accum * p_bytes * (3 + (checkpointing != "off"))
    comm = moved * (world - 1) / world / LINK_BYTES_PER_S
    host = (2 * p_bytes / HOST_BYTES_PER_S + n_params / HOST_ADAM_PARAMS_PER_S) / (world if stage else 1) \
        if offload else 0.0
    return compute + comm + host


def estimate(cfg: Config, stage: int, offload: bool, micro_batch: int, world: int, checkpointing: str = "off",
             counts: tuple[int, int] | None = None) -> Estimate:
    bf16 = cfg.train.precision == "bf16"
    counts = counts or param_counts(cfg)
    states = [model_state_bytes(n, stage, offload, world, bf16) for n in counts]
    prof = profile(cfg, micro_batch, checkpointing)
    # train.ema_decay: an fp32 average of G's weights, partitioned like them at ZeRO-3 (vidpred.train.ema)
    ema = 0 if cfg.train.ema_decay is None else 4 * counts[0] // (world if stage >= 3 else 1)
    return Estimate(
        stage=stage, offload=offload, micro_batch=micro_batch, grad_accum=cfg.data.batch_size // micro_batch,
        checkpointing=checkpointing,
        params=sum(s[0] for s in states) + ema, grads=sum(s[1] for s in states), optimizer=sum(s[2] for s in states),
        buckets=sum(bucket_bytes(n, stage, bf16) for n in counts),
        activations=int(ACTIVATION_SLACK * prof.activations),
        seconds=step_seconds(cfg, stage, offload, micro_batch, world, checkpointing, sum(counts), prof.flops),
    )


def micro_batches(batch: int) -> list[int]:
    """The micro-batches that split ``batch`` into equal parts, largest first."""
    return [m for m in range(batch, 0, -1) if batch % m == 0]


def candidates(cfg: Config, world: int) -> list[Estimate]:
    """Every layout at the configured data.batch_size: micro-batch x checkpointing x ZeRO stage x offload."""
    counts = param_counts(cfg)
    return [estimate(cfg, s, o, m, world, mode, counts)
            for mode in CHECKPOINTING for m in micro_batches(cfg.data.batch_size) for s, o in LAYOUTS]


def choose(cfg: Config, memory: int, world: int, tried: list[Estimate] | None = None) -> Estimate:
    """The fitting layout with the smallest estimated step time (ties: the earlier in :func:`candidates`). When
    none fits — not even micro-batch 1 with every saving on — MemoryError says by how much."""
    tried = tried or candidates(cfg, world)
    fitting = [e for e in tried if e.total <= memory]
    if fitting:
        return min(fitting, key=lambda e: e.seconds)
    least = min(tried, key=lambda e: e.total)
    raise MemoryError(
        f"nothing fits in {memory / GiB:.1f} GiB per device with {world} workers at data.batch_size="
        f"{cfg.data.batch_size}: the smallest layout, {least.describe()}, needs {least.total / GiB:.1f} GiB, "
        f"{(least.total - memory) / GiB:.1f} GiB more ({least.activations / GiB:.1f} GiB of it activations, which "
        f"more workers do not shrink). Lower the resolution or data.context/data.future, or pick a smaller "
        f"model.size.")


def summary(tried: list[Estimate], memory: int) -> list[Estimate]:
    """One row per (checkpointing, micro-batch): its fastest fitting layout, else its smallest."""
    rows: dict[tuple[str, int], Estimate] = {}
    for e in tried:
        key, best = (e.checkpointing, e.micro_batch), rows.get((e.checkpointing, e.micro_batch))
        fits, best_fits = e.total <= memory, best is not None and best.total <= memory
        if best is None or (fits and (not best_fits or e.seconds < best.seconds)) or \
                (not fits and not best_fits and e.total < best.total):
            rows[key] = e
    return list(rows.values())


def format_table(rows: list[Estimate], memory: int | None = None, chosen: Estimate | None = None) -> str:
    head = (f"{'ckpt':<6}{'micro x accum':>14}  {'layout':<17}{'params':>9}{'grads':>9}{'optim':>9}{'buckets':>9}"
            f"{'activ.':>9}{'total':>9}{'est. s/step':>13}")
    lines = [head + ("  fits" if memory else ""), "-" * (len(head) + (6 if memory else 0))]
    for e in rows:
        cells = [e.params, e.grads, e.optimizer, e.buckets, e.activations, e.total]
        line = (f"{e.checkpointing:<6}{f'{e.micro_batch} x {e.grad_accum}':>14}  {e.layout:<17}"
                + "".join(f"{c / GiB:>8.2f}G" for c in cells) + f"{e.seconds:>13.3f}")
        if memory:
            line += "  " + ("yes" if e.total <= memory else "no ") + ("  <- chosen" if e == chosen else "")
        lines.append(line)
    return "\n".join(lines)


def device_memory(cfg: Config) -> int:
    """Bytes per device for ``zero_stage: auto``: the configured figure, else the GPU's, else RAM / workers."""
    t = cfg.train
    if t.device_memory:
        return parse_bytes(t.device_memory)
    if t.use_gpu:
        if not torch.cuda.is_available():
            raise ConfigError("train.zero_stage=auto with train.use_gpu: this driver sees no GPU to measure; "
                              "set train.device_memory, e.g. 80GiB")
        return torch.cuda.get_device_properties(0).total_memory
    import psutil

    return psutil.virtual_memory().total // t.num_workers


def resolve_auto(cfg: Config) -> Config:
    """``train.zero_stage: auto`` → the plan's choice (stage, offload, grad_accum, activation checkpointing) at
    the configured data.batch_size; any other config unchanged. Refuses (ConfigError, before any cluster
    resource is claimed) when nothing fits."""
    if cfg.train.zero_stage != "auto":
        return cfg
    memory = device_memory(cfg)
    try:
        chosen = choose(cfg, memory, cfg.train.num_workers)
    except MemoryError as exc:
        raise ConfigError(f"train.zero_stage=auto: {exc}") from None
    print(f"[vidpred] zero_stage=auto: {chosen.describe()} ({chosen.total / GiB:.2f} of {memory / GiB:.1f} GiB per "
          f"device at data.batch_size={cfg.data.batch_size})", flush=True)
    train = cfg.train.model_copy(update={"zero_stage": chosen.stage, "offload_optimizer": chosen.offload,
                                         "grad_accum": chosen.grad_accum,
                                         "activation_checkpointing": chosen.checkpointing})
    return cfg.model_copy(update={"train": train})
