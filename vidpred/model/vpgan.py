"""VPGAN generator: a small SVG-LP / SAVP-style stochastic video predictor.

Frames live in "model space": ``[B, T, 3, H, W]`` float in ``[-1, 1]`` (see :func:`to_model_space`).
The generator walks the clip one step at a time and predicts frame ``t`` from the frames before it,
for ``t = 1 .. T-1``::

    e, skips = Encoder(x_{t-1})                   input frame: ground truth where it is observed,
                                                  else the model's own previous prediction
    mu_p, logvar_p = Prior([e, s])                learned prior   p(z_t | x_<t)   (s: recurrent state)
    mu_q, logvar_q = Posterior([e, s, Enc(x_t)])  posterior       q(z_t | x_<=t)  (needs the target x_t)
    z_t  = mu + exp(0.5 * logvar) * eps           from q where x_t is observed, else from p
    s    = ConvGRU([e, z_t], s)                   dynamics on latent maps at H / 2**levels
    x̂_t  = Decoder(s, skips)                      tanh output, in [-1, 1]

* Skip connections come from the input frame ``x_{t-1}`` while it is a context frame; during the
  future steps they stay those of the last context frame (as in SVG), so training (teacher forcing)
  and inference (own predictions fed back) decode with the same skips.
* Training (``use_posterior=True``): every input is ground truth (teacher forcing) and every z comes
  from the posterior. The context steps warm up the state; only the ``future`` steps are decoded and
  returned. ``kl`` is averaged over all steps ``1 .. T-1`` (context steps included: their z feed the
  state too).
* Inference (``use_posterior=False`` / :meth:`Generator.predict`): only the context frames are read.
  Inside the context the target frame is known, so z still comes from the posterior there (as SVG's
  generation does); in the future steps z comes from the learned prior and the model feeds its own
  predictions back. ``kl`` then covers the context steps only (zero when ``context == 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vidpred.config import ModelConfig


def to_model_space(frames_uint8: Tensor) -> Tensor:
    """``[..., H, W, 3]`` uint8 (channels-last, as the data pipeline yields) -> ``[..., 3, H, W]`` float32 in [-1, 1]."""
    if frames_uint8.dtype != torch.uint8 or frames_uint8.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [..., H, W, 3]; got {frames_uint8.dtype} {tuple(frames_uint8.shape)}")
    return (frames_uint8.movedim(-1, -3).to(torch.float32) / 127.5 - 1.0).contiguous()


def to_uint8(frames: Tensor) -> Tensor:
    """Inverse of :func:`to_model_space`: ``[..., 3, H, W]`` in [-1, 1] -> ``[..., H, W, 3]`` uint8 (clamped, rounded)."""
    x = ((frames.detach().float().clamp(-1, 1) + 1.0) * 127.5).round()
    return x.to(torch.uint8).movedim(-3, -1).contiguous()


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv -> GroupNorm -> SiLU. GroupNorm is per-sample: no batch statistics, no running buffers."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
        nn.GroupNorm(math.gcd(c_out, 8), c_out),
        nn.SiLU(),
    )


class Encoder(nn.Module):
    """Frame -> (bottleneck features at H / 2**levels, skips at H, H/2, ..., H / 2**(levels-1))."""

    def __init__(self, widths: list[int]):
        super().__init__()
        self.stem = conv_block(3, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(conv_block(widths[i], widths[i + 1], stride=2), conv_block(widths[i + 1], widths[i + 1]))
            for i in range(len(widths) - 1)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = self.stem(x)
        skips = []
        for stage in self.down:
            skips.append(h)
            h = stage(h)
        return h, skips


class Decoder(nn.Module):
    """Bottleneck state + encoder skips -> frame in [-1, 1] (U-Net style: upsample, concat skip, conv)."""

    def __init__(self, widths: list[int]):
        super().__init__()
        levels = range(len(widths) - 2, -1, -1)  # coarse to fine
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv_block(widths[i + 1], widths[i])) for i in levels
        )
        self.fuse = nn.ModuleList(conv_block(2 * widths[i], widths[i]) for i in levels)
        self.out = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, h: Tensor, skips: list[Tensor]) -> Tensor:
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips)):
            h = fuse(torch.cat([up(h), skip], dim=1))
        return torch.tanh(self.out(h))


class ConvGRUCell(nn.Module):
    """GRU on feature maps: h' = (1 - u) * h + u * tanh(W [x, r * h])."""

    def __init__(self, c_in: int, c_hidden: int):
        super().__init__()
        self.gates = nn.Conv2d(c_in + c_hidden, 2 * c_hidden, 3, padding=1)
        self.candidate = nn.Conv2d(c_in + c_hidden, c_hidden, 3, padding=1)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        r, u = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        c = torch.tanh(self.candidate(torch.cat([x, r * h], dim=1)))
        return (1 - u) * h + u * c


def gaussian_head(c_in: int, c_hidden: int, z_channels: int) -> nn.Sequential:
    """Features -> [mu, logvar] maps. The last conv starts at zero: prior = posterior = N(0, I), KL = 0."""
    head = nn.Sequential(conv_block(c_in, c_hidden), nn.Conv2d(c_hidden, 2 * z_channels, 3, padding=1))
    nn.init.zeros_(head[-1].weight)
    nn.init.zeros_(head[-1].bias)
    return head


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """z = mu + std * eps with std = exp(0.5 * logvar)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) in closed form, summed over channels and pixels, mean over batch."""
    kl = 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0)
    return kl.flatten(1).sum(1).mean()


@dataclass
class GenOutput:
    pred: Tensor  # [B, future, 3, H, W] in [-1, 1]
    kl: Tensor  # scalar: KL(posterior || learned prior), summed over latent dims/pixels, mean over batch and steps


class Generator(nn.Module):
    """The VPGAN generator; see the module docstring for the recurrence."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.model_copy()  # own copy: later edits to the caller's config cannot desync the checks
        # Channel width per resolution: full, /2, /4, ... ; doubles twice then stays (keeps the GRU small).
        widths = [cfg.channels * 2 ** min(i, 2) for i in range(cfg.levels + 1)]
        d = widths[-1]
        self.encoder = Encoder(widths)
        self.prior = gaussian_head(2 * d, d, cfg.z_channels)  # [e_{t-1}, s]
        self.posterior = gaussian_head(3 * d, d, cfg.z_channels)  # [e_{t-1}, s, e_t]
        self.cell = ConvGRUCell(d + cfg.z_channels, d)
        self.decoder = Decoder(widths)

    def _check_frames(self, frames: Tensor) -> None:
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"expected frames [B, T, 3, H, W] in [-1, 1]; got shape {tuple(frames.shape)}")
        h, w = frames.shape[-2:]
        m = self.cfg.spatial_multiple
        if h % m or w % m:
            raise ValueError(f"frame height and width must be multiples of {m} (2**model.levels, "
                             f"model.levels = {self.cfg.levels}); got {h}x{w} (HxW)")

    def _encode(self, frames: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Encode [B, T, 3, H, W] in one batched pass -> features [B, T, ...] and skips [B, T, ...]."""
        bt = frames.shape[:2]
        e, skips = self.encoder(frames.flatten(0, 1))
        return e.unflatten(0, bt), [s.unflatten(0, bt) for s in skips]

    def forward(self, frames: Tensor, context: int, use_posterior: bool = True, future: int | None = None) -> GenOutput:
        """frames [B, T, 3, H, W] in [-1, 1].

        use_posterior=True (training): T must equal context + future (future defaults to T - context).
        use_posterior=False (inference): only frames[:, :context] are read; ``future`` (default
        T - context) steps are predicted from the prior, feeding predictions back.
        """
        self._check_frames(frames)
        batch, t_total = frames.shape[:2]
        future = t_total - context if future is None else future
        if context < 1 or future < 1:
            raise ValueError(f"need context >= 1 and future >= 1; got context={context}, future={future} (T={t_total})")
        if use_posterior and t_total != context + future:
            raise ValueError(f"use_posterior=True needs the ground truth of every step: T={t_total} != "
                             f"context + future = {context} + {future}")
        if t_total < context:
            raise ValueError(f"got {t_total} frames, fewer than context={context}")

        seen = t_total if use_posterior else context  # frames whose ground truth the model may read
        e_seen, skips_seen = self._encode(frames[:, :seen])
        state = torch.zeros_like(e_seen[:, 0])
        preds: list[Tensor] = []
        kls: list[Tensor] = []
        for t in range(1, context + future):  # predict frame t from frames < t
            if t - 1 < seen:
                e = e_seen[:, t - 1]
            else:
                e, _ = self.encoder(preds[-1])  # own prediction fed back
            if t - 1 < context:
                skips = [s[:, t - 1] for s in skips_seen]  # afterwards: frozen at the last context frame
            e_and_state = torch.cat([e, state], dim=1)
            mu_p, logvar_p = self.prior(e_and_state).chunk(2, dim=1)
            if t < seen:
                mu_q, logvar_q = self.posterior(torch.cat([e_and_state, e_seen[:, t]], dim=1)).chunk(2, dim=1)
                z = reparameterize(mu_q, logvar_q)
                kls.append(gaussian_kl(mu_q, logvar_q, mu_p, logvar_p))
            else:
                z = reparameterize(mu_p, logvar_p)
            state = self.cell(torch.cat([e, z], dim=1), state)
            if t >= context:  # context steps only warm up the state; nothing to decode
                preds.append(self.decoder(state, skips))
        kl = torch.stack(kls).mean() if kls else frames.new_zeros(())
        return GenOutput(pred=torch.stack(preds, dim=1), kl=kl)

    @torch.no_grad()
    def predict(self, context_frames: Tensor, future: int, samples: int = 1) -> Tensor:
        """Sample ``future`` frames after ``context_frames`` [B, C, 3, H, W] (no ground truth after them).

        Returns [B, future, 3, H, W], or [samples, B, future, 3, H, W] when samples > 1. Runs under no_grad.
        """
        if samples < 1:
            raise ValueError(f"samples must be >= 1; got {samples}")
        self._check_frames(context_frames)
        batch, context = context_frames.shape[:2]
        x = context_frames
        if samples > 1:
            x = x.unsqueeze(0).expand(samples, *x.shape).flatten(0, 1)  # sample-major: [S*B, ...]
        pred = self(x, context=context, use_posterior=False, future=future).pred
        return pred.unflatten(0, (samples, batch)) if samples > 1 else pred
