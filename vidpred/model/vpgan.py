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
    x̂_t  = Decoder(h, skips, x_{t-1}, x_c)        m_p * warp(x_{t-1}, flow_p) + m_c * warp(x_c, flow_c) + m_n * tanh(rgb)
                                                  (x_c: the last context frame; model.warp_from: previous
                                                  leaves it out: mask * warp(x_{t-1}, flow) + (1 - mask) * tanh(rgb))

Encoder and decoder are U-Net halves of ``model.blocks`` conv blocks per resolution, widths from
:func:`channel_widths`; ``model.size`` (tiny / base / large) picks all of these at once (config.py).

* Skip connections come from the input frame ``x_{t-1}`` while it is a context frame; during the
  future steps they stay those of the last context frame (as in SVG), so training (teacher forcing)
  and inference (own predictions fed back) decode with the same skips.
* ``forward`` runs two phases. **Observe** (the context, steps ``1 .. context-1``): ground truth in, z
  from the posterior (the target frame is known), nothing decoded: these steps only warm up the state.
  **Imagine** (the future, steps ``context .. context+future-1``): each step is decoded and returned.
* Training (``teacher_forcing=True``): the imagined steps read the ground truth too and draw z from the
  posterior. ``kl`` is averaged over all steps ``1 .. T-1`` (context steps included: their z feed the
  state too). With ``prior_path=True`` the future is also imagined free running from the same observed
  context (``prior_pred``): SAVP's GAN path, the one inference uses, so that the adversarial terms reach it.
* Inference (``teacher_forcing=False`` / :meth:`Generator.predict`): only the context frames are read.
  The context is observed as in training (z from the posterior, as SVG's generation does); in the future
  z comes from the learned prior and the model feeds its own predictions back. ``kl`` then covers the
  context steps only (zero when ``context == 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidpred.config import CHECKPOINTING, ModelConfig
from vidpred.model.blocks import (
    Dynamics,
    conv_block,
    gaussian_head,
    gaussian_kl,
    recomputed,
    recomputed_if,
    reparameterize,
    stage,
)


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
    """Frame -> (bottleneck features at H / 2**levels, skips at H, H/2, ..., H / 2**(levels-1)).

    With ``recompute_stages`` each stage is a checkpointed region of its own (only its output stays)."""

    recompute_stages = False

    def __init__(self, widths: list[int], blocks: int):
        super().__init__()
        self.stem = stage(3, widths[0], blocks)
        self.down = nn.ModuleList(stage(widths[i], widths[i + 1], blocks, stride=2) for i in range(len(widths) - 1))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = recomputed_if(self.recompute_stages, self.stem, x)
        skips = []
        for down in self.down:
            skips.append(h)
            h = recomputed_if(self.recompute_stages, down, h)
        return h, skips



def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Backward-warp ``image`` [N, C, H, W] by ``flow`` [N, 2, H, W] in pixels (dx, dy), bilinear, border pad."""
    n, _, h, w = image.shape
    identity = torch.eye(2, 3, dtype=image.dtype, device=image.device).expand(n, 2, 3)
    grid = F.affine_grid(identity, [n, 1, h, w], align_corners=False)
    offset = flow.permute(0, 2, 3, 1) * torch.tensor([2.0 / w, 2.0 / h], dtype=image.dtype, device=image.device)
    return F.grid_sample(image, grid + offset, mode="bilinear", padding_mode="border", align_corners=False)


class Decoder(nn.Module):
    """Bottleneck state + encoder skips + the previous frame (+ the last context frame) -> the next frame in [-1, 1].

    U-Net style (upsample, concat skip, convs), then a head that composites, as SAVP does, warps of known frames
    with new pixels. ``model.warp_from: previous``: ``mask * warp(previous, flow) + (1 - mask) * tanh(rgb)``.
    ``context_and_previous`` (the default): ``m_p * warp(previous, flow_p) + m_c * warp(last context frame,
    flow_c) + m_n * tanh(rgb)``, ``(m_p, m_c, m_n)`` a softmax over three logits per pixel. In the future the
    previous frame is the model's own prediction: each bilinear warp of it low-passes it again (measured:
    sharpness 0.94 of real frames' at the first future step, 0.77 at the eighth), while the context frame is
    real at every step and is resampled once.

    The head starts at flow 0 and new pixels ~0.7% (mask sigmoid(5), or softmax(5, 5, 0)): an untrained model
    is nearly copy-last-frame and learns motion and new content from there (with a ~0.95 start a 4-minute CPU
    benchmark run only tied copy-last; with ~0.99 it led).
    """

    MASK_BIAS = 5.0

    def __init__(self, widths: list[int], blocks: int, warp_from: str = "context_and_previous"):
        super().__init__()
        levels = range(len(widths) - 2, -1, -1)  # coarse to fine
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv_block(widths[i + 1], widths[i])) for i in levels
        )
        self.fuse = nn.ModuleList(stage(2 * widths[i], widths[i], blocks) for i in levels)
        self.from_context = warp_from == "context_and_previous"
        # rgb, flow (dx, dy) per warped frame, one mask logit (previous) or three (previous, context, new pixels)
        self.split = [3, 2, 2, 3] if self.from_context else [3, 2, 1]
        self.out = nn.Conv2d(widths[0], sum(self.split), 3, padding=1)
        nn.init.zeros_(self.out.weight)
        mask_bias = [self.MASK_BIAS, self.MASK_BIAS, 0.0] if self.from_context else [self.MASK_BIAS]
        with torch.no_grad():
            self.out.bias.copy_(torch.tensor([0.0] * (sum(self.split) - len(mask_bias)) + mask_bias))

    recompute_stages = False

    def forward(self, h: Tensor, skips: list[Tensor], previous: Tensor, context_frame: Tensor) -> Tensor:
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips)):
            h = recomputed_if(self.recompute_stages, _up_and_fuse, up, fuse, h, skip)
        if not self.from_context:
            rgb, flow, mask = self.out(h).split(self.split, dim=1)
            mask = torch.sigmoid(mask)
            return mask * warp(previous, flow) + (1 - mask) * torch.tanh(rgb)
        rgb, flow_p, flow_c, logits = self.out(h).split(self.split, dim=1)
        m = torch.softmax(logits, dim=1)
        return m[:, 0:1] * warp(previous, flow_p) + m[:, 1:2] * warp(context_frame, flow_c) + m[:, 2:3] * torch.tanh(rgb)


def _up_and_fuse(up: nn.Module, fuse: nn.Module, h: Tensor, skip: Tensor) -> Tensor:
    return fuse(torch.cat([up(h), skip], dim=1))


@dataclass
class GenOutput:
    pred: Tensor  # [B, future, 3, H, W] in [-1, 1]
    kl: Tensor  # scalar: KL(posterior || learned prior), summed over latent dims/pixels, mean over batch and steps
    # [B, future, 3, H, W]: the same future imagined from the prior, own predictions fed back (as inference
    # does), from the same observed context; only with ``prior_path=True``, else None
    prior_pred: Tensor | None = None


class Generator(nn.Module):
    """The VPGAN generator; see the module docstring for the recurrence.

    ``checkpointing`` (``train.activation_checkpointing``) trades compute for memory in training; results
    are the same either way, up to the order of gradient sums. ``off``: autograd keeps every activation and the
    observed frames are encoded in one batched pass. ``step``: every step in time is a checkpointed region —
    the encoding of each frame, each :meth:`_latent_step`, each decoding of a future frame: between regions
    only their inputs and outputs stay (bottleneck features, the recurrent state, the last context frame's
    skips, the predictions), and backward rebuilds one region's activations at a time. ``block``: ``step``,
    and inside each region every conv stage of the encoder and decoder is a region of its own, so that
    rebuilding holds one stage at a time (those stages run three times instead of two).
    """

    def __init__(self, cfg: ModelConfig, checkpointing: str = "off"):
        super().__init__()
        if checkpointing not in CHECKPOINTING:
            raise ValueError(f"checkpointing {checkpointing!r}; allowed: {', '.join(CHECKPOINTING)}")
        self.cfg = cfg.model_copy()  # own copy: later edits to the caller's config cannot desync the checks
        self.checkpointing = checkpointing
        widths = channel_widths(cfg)
        d = widths[-1]
        self.encoder = Encoder(widths, cfg.blocks)
        self.prior = gaussian_head(2 * d, d, cfg.z_channels)  # [e_{t-1}, h]
        self.posterior = gaussian_head(3 * d, d, cfg.z_channels)  # [e_{t-1}, h, e_t]
        self.dynamics = Dynamics(cfg.rnn, d + cfg.z_channels, d, cfg.rnn_layers)
        self.decoder = Decoder(widths, cfg.blocks, cfg.warp_from)
        self.encoder.recompute_stages = self.decoder.recompute_stages = checkpointing == "block"

    def _check_frames(self, frames: Tensor) -> None:
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"expected frames [B, T, 3, H, W] in [-1, 1]; got shape {tuple(frames.shape)}")
        h, w = frames.shape[-2:]
        m = self.cfg.spatial_multiple
        if h % m or w % m:
            raise ValueError(f"frame height and width must be multiples of {m} (2**model.levels, "
                             f"model.levels = {self.cfg.levels}); got {h}x{w} (HxW)")

    def _encode(self, frames: Tensor, context: int) -> tuple[Tensor, list[Tensor]]:
        """Encode the observed frames [B, T, 3, H, W] -> their features [B, T, ...] and the skips of frame
        ``context - 1``, the last context frame (the only skips the decoder reads). Checkpointing off: one
        batched pass (and so without grad). Otherwise frame by frame, each frame's encoding a checkpointed
        region: only its features stay for backward, which rebuilds one frame's activations at a time."""
        if self.checkpointing == "off" or not torch.is_grad_enabled():
            bt = frames.shape[:2]
            e, skips = self.encoder(frames.flatten(0, 1))
            return e.unflatten(0, bt), [s.unflatten(0, bt)[:, context - 1] for s in skips]
        per_frame = [recomputed(self.encoder, frames[:, i]) for i in range(frames.shape[1])]
        return torch.stack([e for e, _ in per_frame], dim=1), per_frame[context - 1][1]

    def forward(self, frames: Tensor, context: int, teacher_forcing: bool = True, future: int | None = None,
                prior_path: bool = False) -> GenOutput:
        """frames [B, T, 3, H, W] in [-1, 1]: :meth:`_observe` the context, then :meth:`_imagine` the future.

        teacher_forcing=True (training): the future steps read the ground truth too, so T must equal
        context + future (future defaults to T - context).
        teacher_forcing=False (inference): only frames[:, :context] are read; ``future`` (default
        T - context) steps are predicted from the prior, feeding predictions back.
        Either way the context steps draw z from the posterior: their target frame is known.
        ``prior_path`` (with teacher forcing: SAVP's two paths in one pass): from the same observed context,
        the future is imagined a second time as inference imagines it (prior z, own predictions fed back),
        into ``prior_pred``; the context is encoded and observed once for both.
        """
        self._check_frames(frames)
        t_total = frames.shape[1]
        future = t_total - context if future is None else future
        if context < 1 or future < 1:
            raise ValueError(f"need context >= 1 and future >= 1; got context={context}, future={future} (T={t_total})")
        if teacher_forcing and t_total != context + future:
            raise ValueError(f"teacher_forcing=True needs the ground truth of every step: T={t_total} != "
                             f"context + future = {context} + {future}")
        if t_total < context:
            raise ValueError(f"got {t_total} frames, fewer than context={context}")

        seen = t_total if teacher_forcing else context  # frames whose ground truth the model may read
        e_seen, skips = self._encode(frames[:, :seen], context)
        h, states, context_kls = self._observe(e_seen, context)
        preds, future_kls = self._imagine(frames, e_seen, skips, h, states, context, future, teacher_forcing)
        kls = context_kls + future_kls
        kl = torch.stack(kls).mean() if kls else frames.new_zeros(())
        prior_pred = None
        if prior_path and teacher_forcing:  # free running from the same state (states are never changed in place)
            prior_pred = torch.stack(self._imagine(frames, e_seen, skips, h, states, context, future, False)[0], dim=1)
        elif prior_path:
            raise ValueError("prior_path=True needs teacher_forcing=True: free running already is the prior path")
        return GenOutput(pred=torch.stack(preds, dim=1), kl=kl, prior_pred=prior_pred)

    def _region(self, fn, *args):
        """``fn(*args)``, as a checkpointed region unless checkpointing is off (one step in time)."""
        return recomputed_if(self.checkpointing != "off", fn, *args)

    def _latent_step(self, e: Tensor, h: Tensor, states: list[tuple[Tensor, ...]], target: Tensor | None
                     ) -> tuple[Tensor, list[tuple[Tensor, ...]], Tensor | None]:
        """One step of the recurrence from the input frame's features ``e`` and the dynamics' output ``h``:
        z from the posterior when ``target`` (the features of the frame to predict) is given, with
        KL(posterior || prior); else z from the prior and no KL. Returns (h, states, kl or None)."""
        e_and_state = torch.cat([e, h], dim=1)
        mu_p, logvar_p = self.prior(e_and_state).chunk(2, dim=1)
        kl = None
        if target is not None:
            mu_q, logvar_q = self.posterior(torch.cat([e_and_state, target], dim=1)).chunk(2, dim=1)
            z = reparameterize(mu_q, logvar_q)
            kl = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
        else:
            z = reparameterize(mu_p, logvar_p)
        h, states = self.dynamics(torch.cat([e, z], dim=1), states)
        return h, states, kl

    def _observe(self, e_seen: Tensor, context: int) -> tuple[Tensor, list[tuple[Tensor, ...]], list[Tensor]]:
        """The context, steps t = 1 .. context-1: ground truth in, z from the posterior (x_t is known). These
        steps only warm up the state; nothing is decoded. Returns (h, states, KL per step)."""
        h = torch.zeros_like(e_seen[:, 0])  # the dynamics' output: what prior, posterior and decoder read
        states = self.dynamics.zero_state(h)
        kls = []
        for t in range(1, context):
            h, states, kl = self._region(self._latent_step, e_seen[:, t - 1], h, states, e_seen[:, t])
            kls.append(kl)
        return h, states, kls

    def _imagine(self, frames: Tensor, e_seen: Tensor, skips: list[Tensor], h: Tensor,
                 states: list[tuple[Tensor, ...]], context: int, future: int, teacher_forcing: bool
                 ) -> tuple[list[Tensor], list[Tensor]]:
        """The future, steps t = context .. context+future-1, each decoded. The first reads the last context
        frame; after it, teacher forcing reads the ground truth and draws z from the posterior, free running
        reads its own previous prediction and draws z from the prior. ``skips`` (those of the last context
        frame) serve every step. Returns (predictions, KL per step: empty when free running)."""
        e, previous = e_seen[:, context - 1], frames[:, context - 1]
        last_context = previous
        preds: list[Tensor] = []
        kls: list[Tensor] = []
        for t in range(context, context + future):  # predict frame t from frames < t
            if t > context and teacher_forcing:
                e, previous = e_seen[:, t - 1], frames[:, t - 1]
            elif t > context:
                previous = preds[-1]  # own prediction fed back
                e, _ = self._region(self.encoder, previous)
            h, states, kl = self._region(self._latent_step, e, h, states, e_seen[:, t] if teacher_forcing else None)
            if kl is not None:
                kls.append(kl)
            preds.append(self._region(self.decoder, h, skips, previous, last_context))
        return preds, kls

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
        pred = self(x, context=context, teacher_forcing=False, future=future).pred
        return pred.unflatten(0, (samples, batch)) if samples > 1 else pred

    def retrodict(self, context_frames: Tensor, pred: Tensor) -> Tensor:
        """Run time backwards (the optional cycle term): the predicted future, reversed, is the context; the
        context frames are predicted from the prior, so no ground truth of them leaks in through z.

        context_frames [B, C, 3, H, W], pred [B, F, 3, H, W] -> [B, C, 3, H, W] in forward order. Differentiable.
        """
        backwards = torch.cat([context_frames, pred], dim=1).flip(1)
        return self(backwards, context=pred.shape[1], teacher_forcing=False).pred.flip(1)
