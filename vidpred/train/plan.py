"""Memory planner: per-GPU bytes of a run before it launches, and the cheapest layout that fits.

For each ZeRO stage (0-3), with or without ``offload_optimizer: cpu``, and each micro-batch, it adds up,
per rank and for both engines (G and D):

* model states — params, grads, optimizer (AdamW: two moments; with bf16 also the fp32 master copy),
  divided by the world size the way the stage partitions them (ZeRO paper, Rajbhandari et al. 2020):
  stage 1 partitions the optimizer, stage 2 also the gradients, stage 3 also the parameters;
  offload moves the optimizer partition (and its fp32 work) to host memory;
* DeepSpeed's communication buckets (stage 1/2: reduce + all-gather buckets; stage 3: prefetch and
  live-parameter limits and the reduce bucket), capped by the model size (vidpred.train.engines caps
  DeepSpeed's bucket sizes so);
* activations, measured — not guessed — by running the real training forward passes on the ``meta``
  device at the target resolution and summing what autograd saves for backward (no memory is used),
  plus a measured slack for backward's transient buffers (``ACTIVATION_SLACK``);
* a fixed runtime overhead (CUDA context and allocator slack).

Parameter counts come from building the real modules on the ``meta`` device too, so a 300 M-parameter
model is planned in well under a second without allocating it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vidpred.config import Config, ConfigError, parse_bytes
from vidpred.train.engines import bucket_elements

GiB = 2**30
RUNTIME_OVERHEAD = int(0.75 * GiB)       # CUDA context + allocator fragmentation, typical for PyTorch 2.x
STAGE3_PREFETCH_ELEMENTS = int(5e7)     # stage3_prefetch_bucket_size default
STAGE3_LIVE_ELEMENTS = int(1e9)         # stage3_max_live_parameters default
# What autograd saves is most, not all, of a step's activation peak: backward also holds transient
# gradient buffers: the slack covers them, as measured on CPU by benchmarks/plan_check.py (growth of peak RSS
# between micro-batches, fresh process each; figures in docs/training.md).
ACTIVATION_SLACK = 1.15
MICRO_BATCHES = (1, 2, 4, 8, 16)
# Cheapest first: less communication, no host round trips.
LAYOUTS = ((0, False), (1, False), (2, False), (3, False), (2, True), (3, True))


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
    overhead: int = RUNTIME_OVERHEAD

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.buckets + self.activations + self.overhead

    @property
    def layout(self) -> str:
        return f"ZeRO-{self.stage}" + (" + offload" if self.offload else "")


def _modules(cfg: Config):
    from vidpred.model import Discriminators, Generator

    with torch.device("meta"):
        return Generator(cfg.model), Discriminators(cfg.model)


def param_counts(cfg: Config) -> tuple[int, int]:
    """(generator, discriminators) parameter counts, from modules built on the meta device."""
    g, d = _modules(cfg)
    return sum(p.numel() for p in g.parameters()), sum(p.numel() for p in d.parameters())


class _SavedBytes:
    """Sums the bytes autograd saves for backward, leaving out parameters (counted as model states)."""

    def __init__(self, params):
        self.param_ids = {id(p) for p in params}
        self.total = 0

    def pack(self, t: torch.Tensor):
        if id(t) not in self.param_ids:
            self.total += t.numel() * t.element_size()
        return t

    @staticmethod
    def unpack(t):
        return t


def activation_bytes(cfg: Config, micro_batch: int) -> int:
    """Peak bytes held for backward in one GAN step: G's graph (alive from G's forward to its backward)
    plus the larger of D's step on cat([real, fake]) and D's forward on the fake for G's loss."""
    g, d = _modules(cfg)
    dtype = torch.bfloat16 if cfg.train.precision == "bf16" else torch.float32
    g, d = g.to(dtype), d.to(dtype)
    frames = torch.zeros(micro_batch, cfg.data.context + cfg.data.future, 3, cfg.data.height, cfg.data.width,
                         device="meta", dtype=dtype, requires_grad=False)
    sizes = {}
    for name, run in (
        ("g", lambda: g(frames, cfg.data.context)),
        ("d_step", lambda: d(torch.cat([frames, frames]), cfg.data.context)),
        ("d_fake", lambda: d(frames.clone().requires_grad_(True), cfg.data.context)),
    ):
        counter = _SavedBytes(list(g.parameters()) + list(d.parameters()))
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
            run()
        sizes[name] = counter.total
    return int(ACTIVATION_SLACK * (sizes["g"] + max(sizes["d_step"], sizes["d_fake"])))


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


def estimate(cfg: Config, stage: int, offload: bool, micro_batch: int, world: int,
             counts: tuple[int, int] | None = None, activations: int | None = None) -> Estimate:
    bf16 = cfg.train.precision == "bf16"
    counts = counts or param_counts(cfg)
    states = [model_state_bytes(n, stage, offload, world, bf16) for n in counts]
    return Estimate(
        stage=stage, offload=offload, micro_batch=micro_batch,
        params=sum(s[0] for s in states), grads=sum(s[1] for s in states), optimizer=sum(s[2] for s in states),
        buckets=sum(bucket_bytes(n, stage, bf16) for n in counts),
        activations=activation_bytes(cfg, micro_batch) if activations is None else activations,
    )


def table(cfg: Config, world: int, micro_batches=MICRO_BATCHES) -> list[Estimate]:
    counts = param_counts(cfg)
    acts = {b: activation_bytes(cfg, b) for b in micro_batches}
    return [estimate(cfg, s, o, b, world, counts, acts[b]) for b in micro_batches for s, o in LAYOUTS]


def choose(cfg: Config, memory: int, world: int) -> Estimate:
    """The cheapest layout (LAYOUTS order) that fits ``memory`` at the configured micro-batch."""
    counts, b = param_counts(cfg), cfg.data.batch_size
    acts = activation_bytes(cfg, b)
    tried = [estimate(cfg, s, o, b, world, counts, acts) for s, o in LAYOUTS]
    for e in tried:
        if e.total <= memory:
            return e
    best = min(tried, key=lambda e: e.total)
    raise MemoryError(
        f"nothing fits in {memory / GiB:.1f} GiB per device with {world} workers at data.batch_size={b}: the "
        f"smallest layout, {best.layout}, needs {best.total / GiB:.1f} GiB ({best.activations / GiB:.1f} GiB of it "
        f"activations, which more workers do not shrink). Lower data.batch_size or the resolution, or pick a smaller "
        f"model.size.")


def format_table(rows: list[Estimate], memory: int | None = None, chosen: Estimate | None = None) -> str:
    head = f"{'layout':<17}{'batch':>6}{'params':>10}{'grads':>10}{'optim':>10}{'buckets':>10}{'activ.':>10}{'total':>10}"
    lines = [head + ("  fits" if memory else ""), "-" * (len(head) + (6 if memory else 0))]
    for e in rows:
        cells = [e.params, e.grads, e.optimizer, e.buckets, e.activations, e.total]
        line = f"{e.layout:<17}{e.micro_batch:>6}" + "".join(f"{c / GiB:>9.2f}G" for c in cells)
        if memory:
            line += "  " + ("yes" if e.total <= memory else "no") + ("  <- chosen" if e == chosen else "")
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
    """``train.zero_stage: auto`` → the cheapest stage/offload that fits; any other config unchanged.
    Refuses (ConfigError, before any cluster resource is claimed) when nothing fits."""
    if cfg.train.zero_stage != "auto":
        return cfg
    memory = device_memory(cfg)
    try:
        chosen = choose(cfg, memory, cfg.train.num_workers)
    except MemoryError as exc:
        raise ConfigError(f"train.zero_stage=auto: {exc}") from None
    print(f"[vidpred] zero_stage=auto: {chosen.layout} ({chosen.total / GiB:.2f} of {memory / GiB:.1f} GiB per "
          f"device at data.batch_size={chosen.micro_batch})", flush=True)
    train = cfg.train.model_copy(update={"zero_stage": chosen.stage, "offload_optimizer": chosen.offload})
    return cfg.model_copy(update={"train": train})
