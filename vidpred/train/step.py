"""One GAN step, readable top to bottom.

The order is the one that survives ZeRO-2/3 with two engines (measured with DeepSpeed 0.19.8; DeepSpeed#4923/#3472):
one D forward per D backward on ``cat([real, fake.detach()])``; then G's loss goes through D's *raw
module* with D's parameters frozen, never through D's engine.

The fakes are SAVP's two paths (``loss.gan_paths: both``): the teacher-forced future with posterior z (the
VAE-GAN path, which the L1 and the KL train) and the future imagined from the prior with the model's own
predictions fed back (the GAN path: what inference and validation run). D sees real clips against both; G's
adversarial and feature-matching terms are means over both. ``posterior`` leaves the prior path out. D is :class:`vidpred.model.Discriminators`:
the frame and the clip discriminator in one module, so one engine and one optimizer serve both.

A step is one optimizer step of both engines. With ``train.grad_accum`` = k it takes k micro-batches
(:class:`Window`): each runs D's backward, then G's; gradients add up, and both engines step once, on the
window's last micro-batch (vidpred owns that boundary: with k > 1 the engines run with DeepSpeed's
``managed_gradient_accumulation`` off, so no DeepSpeed micro-step counter can drift from it; with k = 1
every micro-step is DeepSpeed's boundary anyway). D steps right
after the last micro-batch's D backward, so that micro-batch's G pass goes through the updated D, as every
G pass does without accumulation; the earlier micro-batches' G passes see D as it was at the step's start.

A non-finite loss leaves its micro-batch out of that engine's gradient: no backward. The check runs
*before* backward and every rank takes the same decision (:func:`all_finite` all-reduces a flag): one rank
skipping a backward that the others run would leave DeepSpeed's gradient collectives waiting forever. A
non-finite D loss leaves the micro-batch out of G's gradient too (G's loss goes through the same D and the
fake that broke it). At the boundary an engine steps with what its finite micro-batches gave (each weighs
1/k, as always), and not at all when none was finite — a step on no gradient would still move Adam's weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from vidpred.config import Config
from vidpred.model import discriminator_loss, generator_loss, split_real_fake, to_model_space


def _set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def _fp32(tensors):
    """Tensors, or (nested) lists of them, as float32: the losses are computed in fp32 under bf16 too."""
    return tensors.float() if isinstance(tensors, torch.Tensor) else [_fp32(t) for t in tensors]


def all_finite(loss: torch.Tensor) -> bool:
    """Whether ``loss`` is finite on every rank (one all-reduce of a flag when torch.distributed is up)."""
    flag = torch.isfinite(loss.detach()).all().to(torch.float32).reshape(1)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item() == 1.0)


@dataclass
class Window:
    """The micro-batches of one optimizer step: ``size`` (``train.grad_accum``), how many have run, and how
    many of them each engine back-propagated (an engine with none does not step)."""
    size: int = 1
    done: int = 0
    d_backwards: int = 0
    g_backwards: int = 0

    @property
    def last(self) -> bool:
        """Whether the micro-batch now running ends the step (the boundary of both engines)."""
        return self.done == self.size - 1


def gan_step(g_eng, d_eng, batch: torch.Tensor, cfg: Config, step: int = 0,
             finite: Callable[[torch.Tensor], bool] = all_finite,
             window: Window | None = None) -> dict[str, torch.Tensor | float]:
    """Train D then G on one micro-batch of uint8 clips (B, T, H, W, 3); returns every loss term as a detached
    0-d tensor on the engines' device (read them with :func:`vidpred.model.as_floats`: no host sync here beyond
    the finiteness checks), plus ``skipped_d`` / ``skipped_g`` as floats (1.0 when the micro-batch was left
    out of that engine's gradient for a non-finite loss).

    ``step`` (the optimizer step being taken) drives the KL annealing schedule; ``finite`` decides,
    identically on every rank, whether a loss may be back-propagated (default :func:`all_finite`);
    ``window`` is the step this micro-batch belongs to (default: a step of one micro-batch), advanced here.
    """
    window = window or Window()
    kind, context, names = cfg.model.gan_loss, cfg.data.context, d_eng.module.names
    real = to_model_space(batch).to(device=g_eng.device, dtype=_dtype(g_eng))

    out = g_eng(real, context, prior_path=cfg.loss.gan_paths == "both")
    # The fakes: the same context, then the predicted future of each path (posterior; prior when both).
    fakes = [torch.cat([real[:, :context], pred], dim=1) for pred in (out.pred, out.prior_pred) if pred is not None]
    parts = 1 + len(fakes)

    logits, _ = d_eng(torch.cat([real, *(f.detach() for f in fakes)]), context)
    loss_d, d_terms = discriminator_loss(*split_real_fake(_fp32(logits), parts), kind, names)
    d_finite = finite(loss_d)
    if d_finite:
        d_eng.backward(loss_d)
        window.d_backwards += 1
    if window.last and window.d_backwards:
        d_eng.step()
    if not d_finite:
        _end_micro_batch(g_eng, window)
        return {**d_terms, "skipped_d": 1.0, "skipped_g": 1.0}

    _set_requires_grad(d_eng.module, False)
    try:
        # Under ZeRO-3 the engine's hooks on D's submodules gather each layer's partitioned weights on the
        # raw call too (forward and G's backward through D); wrapping it in GatheredParameters breaks that.
        # Real clips ride along in the same call: the feature-matching targets (the real part, constants for
        # G) come from the very D that judges the fakes. A separate no-grad raw call on the real clips would
        # leave ZeRO-3 parameters marked in use: no backward releases them.
        all_logits, all_feats = d_eng.module(torch.cat([real, *fakes]), context)
        fake_logits = split_real_fake(all_logits, parts)[1]
        real_feats, fake_feats = map(list, zip(*(split_real_fake(per_d, parts) for per_d in all_feats)))
        cycle = None
        if cfg.loss.w_cycle:  # through the raw module too: one engine forward per engine backward
            cycle = (g_eng.module.retrodict(real[:, :context], out.pred) - real[:, :context]).abs().mean().float()
        loss_g, g_terms = generator_loss(
            out.pred.float(), real[:, context:].float(), out.kl.float(), _fp32(fake_logits),
            _fp32(real_feats), _fp32(fake_feats), cfg.loss, kind, step=step, cycle=cycle,
            prior_pred=None if out.prior_pred is None else out.prior_pred.float(), names=names)
        skipped_g = not finite(loss_g)
        if not skipped_g:
            g_eng.backward(loss_g)
            window.g_backwards += 1
    finally:
        _set_requires_grad(d_eng.module, True)
    _end_micro_batch(g_eng, window)
    return {**g_terms, **d_terms, "skipped_d": 0.0, "skipped_g": float(skipped_g)}


def noise_seed(seed: int, rank: int, step: int) -> int:
    """The seed of the global torch RNG before optimizer step ``step`` on ``rank``: noise is a function of
    (seed, rank, step), so a run restored at step k draws what an uninterrupted run draws from k on, and two
    runs that differ only in their ZeRO stage draw the same noise."""
    return ((seed * 1_000_003 + rank) * 1_000_000_007 + step) % 2**63


def add_into(sums: dict[str, torch.Tensor | float], values: dict[str, torch.Tensor | float], scale: float = 1.0) -> None:
    """``sums[key] += scale * value`` for every key (on the device: no host sync)."""
    for key, value in values.items():
        value = value * scale if scale != 1.0 else value
        sums[key] = sums[key] + value if key in sums else value


def take_step(g_eng, d_eng, micro_batches: Iterator[torch.Tensor], cfg: Config, rank: int, step: int,
              finite: Callable[[torch.Tensor], bool] = all_finite) -> dict[str, torch.Tensor | float]:
    """Optimizer step ``step + 1`` of ``rank`` as every path takes it — Ray Train's workers
    (:mod:`vidpred.train.loop`) and bare gloo ranks (:mod:`vidpred.train.selfcheck`): the noise of
    (``train.seed``, rank, step), then ``train.grad_accum`` micro-batches from ``micro_batches`` through
    :func:`gan_step` on one :class:`Window`. Returns every term averaged over the micro-batches, the skip
    flags too (``skipped_g`` × ``grad_accum`` = the micro-batches left out of the update)."""
    k = cfg.train.grad_accum
    torch.manual_seed(noise_seed(cfg.train.seed, rank, step))
    window, terms = Window(k), {}
    while window.done < window.size:
        add_into(terms, gan_step(g_eng, d_eng, next(micro_batches), cfg, step=step, finite=finite, window=window),
                 1.0 / k)
    return terms


def _end_micro_batch(g_eng, window: Window) -> None:
    """G's optimizer step at the boundary (if any of the step's G losses was finite); the window advances."""
    if window.last and window.g_backwards:
        g_eng.step()
    window.done += 1


def _dtype(engine) -> torch.dtype:
    return torch.bfloat16 if engine.bfloat16_enabled() else torch.float32
