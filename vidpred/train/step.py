"""One GAN step, readable top to bottom.

The order is the one that survives ZeRO-2/3 with two engines (see STACK.md, DeepSpeed#4923/#3472):
one D forward per D backward on ``cat([real, fake.detach()])``; then G's loss goes through D's *raw
module* with D's parameters frozen, never through D's engine.
"""

from __future__ import annotations

import torch

from vidpred.config import Config
from vidpred.model import d_loss, generator_loss, to_model_space


def _set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def gan_step(g_eng, d_eng, batch: torch.Tensor, cfg: Config) -> dict[str, float]:
    """Train D then G on one batch of uint8 clips (B, T, H, W, 3); returns every loss term."""
    kind = cfg.model.gan_loss
    context = cfg.data.context
    frames = to_model_space(batch).to(device=g_eng.device, dtype=_dtype(g_eng))

    out = g_eng(frames, context)
    target = frames[:, context:]
    real, fake = target.flatten(0, 1), out.pred.flatten(0, 1)

    logits, _ = d_eng(torch.cat([real, fake.detach()]))
    real_logits, fake_logits = logits.float().chunk(2)
    loss_d = d_loss(real_logits, fake_logits, kind)
    d_eng.backward(loss_d)
    d_eng.step()

    _set_requires_grad(d_eng.module, False)
    try:
        # Under ZeRO-3 the engine's hooks on D's submodules gather each layer's partitioned weights on the
        # raw call too (forward and G's backward through D); wrapping it in GatheredParameters breaks that.
        fake_logits, fake_feats = d_eng.module(fake)
        with torch.no_grad():
            _, real_feats = d_eng.module(real)
        loss_g, terms = generator_loss(
            out.pred.float(), target.float(), out.kl.float(), fake_logits.float(),
            [f.float() for f in real_feats], [f.float() for f in fake_feats], cfg.loss, kind)
        g_eng.backward(loss_g)
        g_eng.step()
    finally:
        _set_requires_grad(d_eng.module, True)
    return {**terms, "d_loss": loss_d.item()}


def _dtype(engine) -> torch.dtype:
    return torch.bfloat16 if engine.bfloat16_enabled() else torch.float32
