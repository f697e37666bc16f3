"""VPGAN generator: a small SVG-LP / SAVP-style stochastic video predictor.

Frames live in "model space": ``[B, T, 3, H, W]`` float in ``[-1, 1]`` (see :func:`to_model_space`).
The generator walks the clip one step at a time and predicts frame ``t`` from the frames before it,
for ``t = 1 .. T-1``::

    e, skips = Encoder(x_{t-1})                   input frame: ground truth where it is observed,
                                                  else the model's own previous prediction
    mu_p, logvar_p = Prior([e, h])                learned prior   p(z_t | x_<t)   (h: the dynamics' output)
    mu_q, logvar_q = Posterior([e, h, Enc(x_t)])  posterior       q(z_t | x_<=t)  (needs the target x_t)
    z_t  = mu + exp(0.5 * logvar) * eps           from q where x_t is observed, else from p
    h    = Dynamics([e, z_t])                     ConvGRU / ConvLSTM stack on latent maps at H / 2**levels
    x̂_t  = Decoder(h, skips, x_{t-1})             mask * warp(x_{t-1}, flow) + (1 - mask) * tanh(rgb)

Encoder and decoder are U-Net halves of ``model.blocks`` conv blocks per resolution, widths from
:func:`channel_widths`; ``model.size`` (tiny / base / large) picks all of these at once (config.py).

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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidpred.config import ModelConfig
from vidpred.model.blocks import Dynamics, conv_block, gaussian_head, gaussian_kl, reparameterize, stage


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


def channel_widths(cfg: ModelConfig) -> list[int]:
    """Width per resolution H, H/2, ..., H / 2**levels: doubles twice, then stays (keeps the recurrence affordable)."""
    return [cfg.channels * 2 ** min(i, 2) for i in range(cfg.levels + 1)]


class Encoder(nn.Module):
    """Frame -> (bottleneck features at H / 2**levels, skips at H, H/2, ..., H / 2**(levels-1))."""

    def __init__(self, widths: list[int], blocks: int):
        super().__init__()
        self.stem = stage(3, widths[0], blocks)
        self.down = nn.ModuleList(stage(widths[i], widths[i + 1], blocks, stride=2) for i in range(len(widths) - 1))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = self.stem(x)
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)
        return h, skips


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Backward-warp ``image`` [N, C, H, W] by ``flow`` [N, 2, H, W] in pixels (dx, dy), bilinear, border pad."""
    n, _, h, w = image.shape
    identity = torch.eye(2, 3, dtype=image.dtype, device=image.device).expand(n, 2, 3)
    grid = F.affine_grid(identity, [n, 1, h, w], align_corners=False)
    offset = flow.permute(0, 2, 3, 1) * torch.tensor([2.0 / w, 2.0 / h], dtype=image.dtype, device=image.device)
    return F.grid_sample(image, grid + offset, mode="bilinear", padding_mode="border", align_corners=False)


class Decoder(nn.Module):
    """Bottleneck state + encoder skips + the previous frame -> the next frame in [-1, 1].

    U-Net style (upsample, concat skip, convs), then a head with three outputs, composited as in SAVP:
    ``mask * warp(previous frame, flow) + (1 - mask) * tanh(rgb)``. The head starts at flow 0 and mask
    ~0.99 (sigmoid(5)): an untrained model is nearly copy-last-frame and learns motion and new content
    from there (with a ~0.95 start a 4-minute CPU benchmark run only tied copy-last; with ~0.99 it led).
    """

    MASK_BIAS = 5.0

    def __init__(self, widths: list[int], blocks: int):
        super().__init__()
        levels = range(len(widths) - 2, -1, -1)  # coarse to fine
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv_block(widths[i + 1], widths[i])) for i in levels
        )
        self.fuse = nn.ModuleList(stage(2 * widths[i], widths[i], blocks) for i in levels)
        self.out = nn.Conv2d(widths[0], 3 + 2 + 1, 3, padding=1)  # rgb, flow (dx, dy), mask logit
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.out.bias.copy_(torch.tensor([0.0] * 5 + [self.MASK_BIAS]))

    def forward(self, h: Tensor, skips: list[Tensor], previous: Tensor) -> Tensor:
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips)):
            h = fuse(torch.cat([up(h), skip], dim=1))
        rgb, flow, mask = self.out(h).split([3, 2, 1], dim=1)
        mask = torch.sigmoid(mask)
        return mask * warp(previous, flow) + (1 - mask) * torch.tanh(rgb)


@dataclass
class GenOutput:
    pred: Tensor  # [B, future, 3, H, W] in [-1, 1]
    kl: Tensor  # scalar: KL(posterior || learned prior), summed over latent dims/pixels, mean over batch and steps


class Generator(nn.Module):
    """The VPGAN generator; see the module docstring for the recurrence."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.model_copy()  # own copy: later edits to the caller's config cannot desync the checks
        widths = channel_widths(cfg)
        d = widths[-1]
        self.encoder = Encoder(widths, cfg.blocks)
        self.prior = gaussian_head(2 * d, d, cfg.z_channels)  # [e_{t-1}, h]
        self.posterior = gaussian_head(3 * d, d, cfg.z_channels)  # [e_{t-1}, h, e_t]
        self.dynamics = Dynamics(cfg.rnn, d + cfg.z_channels, d, cfg.rnn_layers)
        self.decoder = Decoder(widths, cfg.blocks)

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
        h = torch.zeros_like(e_seen[:, 0])  # the dynamics' output: what prior, posterior and decoder read
        states = self.dynamics.zero_state(h)
        preds: list[Tensor] = []
        kls: list[Tensor] = []
        for t in range(1, context + future):  # predict frame t from frames < t
            if t - 1 < seen:
                e, previous = e_seen[:, t - 1], frames[:, t - 1]
            else:
                previous = preds[-1]  # own prediction fed back
                e, _ = self.encoder(previous)
            if t - 1 < context:
                skips = [s[:, t - 1] for s in skips_seen]  # afterwards: frozen at the last context frame
            e_and_state = torch.cat([e, h], dim=1)
            mu_p, logvar_p = self.prior(e_and_state).chunk(2, dim=1)
            if t < seen:
                mu_q, logvar_q = self.posterior(torch.cat([e_and_state, e_seen[:, t]], dim=1)).chunk(2, dim=1)
                z = reparameterize(mu_q, logvar_q)
                kls.append(gaussian_kl(mu_q, logvar_q, mu_p, logvar_p))
            else:
                z = reparameterize(mu_p, logvar_p)
            h, states = self.dynamics(torch.cat([e, z], dim=1), states)
            if t >= context:  # context steps only warm up the state; nothing to decode
                preds.append(self.decoder(h, skips, previous))
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

    def retrodict(self, context_frames: Tensor, pred: Tensor) -> Tensor:
        """Run time backwards (the optional cycle term): the predicted future, reversed, is the context; the
        context frames are predicted from the prior, so no ground truth of them leaks in through z.

        context_frames [B, C, 3, H, W], pred [B, F, 3, H, W] -> [B, C, 3, H, W] in forward order. Differentiable.
        """
        backwards = torch.cat([context_frames, pred], dim=1).flip(1)
        return self(backwards, context=pred.shape[1], use_posterior=False).pred.flip(1)
