"""DeepSpeed engines for the generator and the discriminator: separate optimizers, same ZeRO stage; and a
single-process stand-in with the same interface (tests, the quality benchmark)."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.utils.cpp_extension

from vidpred.config import Config


DS_BUCKET_ELEMENTS = int(5e8)  # DeepSpeed's default reduce_bucket_size / allgather_bucket_size


def bucket_elements(n_params: int) -> int:
    """The reduce and all-gather bucket size vidpred gives DeepSpeed for a module of ``n_params``: DeepSpeed
    allocates its gradient-reduction bucket at the full size (default 5e8 elements, 2 GB in fp32) whatever
    the model, so it is capped at the module's parameter count (vidpred plan counts the same). Results do
    not change: every gradient element is reduced once, whatever the bucket."""
    return min(DS_BUCKET_ELEMENTS, n_params)


# On CPU workers (gloo): no copy of every gradient into a contiguous bucket (it buys GPUs less fragmentation,
# on a CPU it is one more pass over all gradients), and all-reduce rather than reduce-scatter, which gloo
# lacks (DeepSpeed falls back to one reduce per rank). Measured by benchmarks/zero_bench.py (docs/training.md).
CPU_ZERO = {"contiguous_gradients": False, "reduce_scatter": False}


def ds_config(cfg: Config) -> dict[str, Any]:
    """The DeepSpeed config both engines share (each gets its own optimizer)."""
    t = cfg.train
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": t.grad_accum,
        # With accumulation vidpred owns the boundary (vidpred.train.step): every step() call is an optimizer
        # step, whatever the micro-batches before it back-propagated; backward() still scales by 1 / grad_accum.
        # Without it every micro-step is DeepSpeed's boundary anyway, so its own (default) path stays.
        "managed_gradient_accumulation": t.grad_accum == 1,
        "gradient_clipping": t.grad_clip,
        "zero_optimization": {"stage": t.zero_stage, **({} if t.use_gpu else CPU_ZERO),
                              **({"offload_optimizer": {"device": "cpu"}} if t.offload_optimizer else {})},
        # offload with a client torch optimizer (AdamW below) is allowed only with this off
        "zero_force_ds_cpu_optimizer": False,
        "bf16": {"enabled": t.precision == "bf16"},
        "steps_per_print": 2**31 - 1,  # vidpred logs its own progress
        "wall_clock_breakdown": False,
    }


def _engine(module: torch.nn.Module, lr: float, cfg: Config):
    import deepspeed

    # betas (0.5, 0.999): the usual GAN choice; a client torch optimizer works at every ZeRO stage.
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=0.0)
    config = ds_config(cfg)
    bucket = bucket_elements(sum(p.numel() for p in module.parameters()))
    config["zero_optimization"].update(reduce_bucket_size=bucket, allgather_bucket_size=bucket)
    engine, *_ = deepspeed.initialize(model=module, optimizer=optimizer, config=config)
    return engine


def build_comm_op() -> list[Path]:
    """Build (or load) DeepSpeed's CPU shared-memory collective op before the engines need it, and clear the
    lock an interrupted build left; returns the stale locks removed.

    DeepSpeed compiles this op the first time a CPU run starts on a machine (~1 minute, silent). The build
    is guarded by torch's ``FileBaton``: a ``lock`` file in the op's build directory that every later process
    waits on, without a timeout, until it is gone. A build killed midway (Ctrl-C during a first run) leaves
    the file, and from then on every ``vidpred train`` hangs at engine start, with nothing on the console.
    Here the build runs under an OS lock (``flock``, which the kernel releases when its holder dies), so a
    torch lock found while holding it was left by a builder that died: it is removed, with a warning, and
    the op is built again. Only a non-vidpred DeepSpeed program building the same op at that moment would
    lose its lock. On GPU machines DeepSpeed has no such op and this only takes the lock.
    """
    from deepspeed.comm.torch import build_shm_op

    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or torch.utils.cpp_extension.get_default_build_root())
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "vidpred-deepspeed-build.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # released on close, or by the kernel if this process dies
        # an op's build directory: ROOT/NAME under TORCH_EXTENSIONS_DIR, else ROOT/py311_cpu/NAME (torch's rule)
        stale = sorted([*root.glob("deepspeed_*/lock"), *root.glob("*/deepspeed_*/lock")])
        for lock in stale:
            logging.getLogger("vidpred.train").warning(
                "[vidpred] removed a DeepSpeed build lock an interrupted build left (%s); building the op again",
                lock)
            lock.unlink(missing_ok=True)
        build_shm_op()
    return stale


def build_engines(generator: torch.nn.Module, discriminator: torch.nn.Module, cfg: Config):
    """(G engine, D engine). torch.distributed must already be up (Ray Train does it)."""
    build_comm_op()
    return _engine(generator, cfg.train.lr_g, cfg), _engine(discriminator, cfg.train.lr_d, cfg)


class LocalEngine:
    """A single-process stand-in for a DeepSpeed engine with the interface :func:`vidpred.train.step.gan_step`
    and the monitor use (call, ``backward``, ``step``, ``module``, ``device``, ``get_lr``, ``bfloat16_enabled``).

    For tests and the quality benchmark: the same GAN step, optimizer (AdamW, betas 0.5/0.999), gradient
    clipping and accumulation (``backward`` scales the loss by 1 / ``grad_accum``, as DeepSpeed's does),
    without a process group or DeepSpeed.
    """

    def __init__(self, module: torch.nn.Module, lr: float, grad_clip: float = 0.0, device: str = "cpu",
                 grad_accum: int = 1):
        self.module = module.to(device)
        self.device = torch.device(device)
        self.grad_clip = grad_clip
        self.grad_accum = grad_accum
        self.optimizer = torch.optim.AdamW(module.parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=0.0)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.grad_accum if self.grad_accum > 1 else loss).backward()

    def step(self) -> None:
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def get_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def bfloat16_enabled(self) -> bool:
        return False


def local_engines(generator: torch.nn.Module, discriminator: torch.nn.Module, cfg: Config, device: str = "cpu"):
    """(G, D) :class:`LocalEngine` pair with the run's learning rates, clipping and accumulation."""
    t = cfg.train
    return (LocalEngine(generator, t.lr_g, t.grad_clip, device, t.grad_accum),
            LocalEngine(discriminator, t.lr_d, t.grad_clip, device, t.grad_accum))
