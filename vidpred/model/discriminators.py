"""Discriminators for VPGAN. They return raw logits (no sigmoid) plus their feature maps.

* :class:`FrameDiscriminator`: a PatchGAN on single predicted frames (is each frame sharp and plausible?).
* :class:`ClipDiscriminator`: a 3D-conv PatchGAN over the whole clip, context then future (is the motion
  plausible, does the future continue the context?). SAVP's video discriminator plays this role.
* :class:`Discriminators`: both in ONE module, so training keeps a single D engine and optimizer. With
  ``checkpointing="block"`` (``train.activation_checkpointing``) each layer's activations are recomputed in
  backward instead of stored.

The training step runs ONE forward on ``torch.cat([real, fake.detach()])`` for the D loss, so every
discriminator treats each sample independently: no BatchNorm (GroupNorm is per sample). With
``model.spectral_norm`` every conv is spectrally normalised and GroupNorm is left out (as in SN-GAN).
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from vidpred.config import CHECKPOINTING, ModelConfig
from vidpred.model.blocks import recomputed_if


def _layer(conv: nn.Module, channels: int, norm: bool, sn: bool) -> nn.Sequential:
    """conv -> GroupNorm (unless spectral norm or ``norm=False``) -> LeakyReLU(0.2)."""
    parts = [spectral_norm(conv) if sn else conv]
    if norm and not sn:
        parts.append(nn.GroupNorm(math.gcd(channels, 8), channels))
    return nn.Sequential(*parts, nn.LeakyReLU(0.2))


class _PatchGAN(nn.Module):
    """Shared body: a list of layers whose outputs are the features, then a 1-channel logit conv. With
    ``recompute_layers`` each layer is a checkpointed region (only the features, its outputs, are kept)."""

    recompute_layers = False

    def run(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        feats = []
        for layer in self.layers:
            x = recomputed_if(self.recompute_layers, layer, x)
            feats.append(x)
        return self.head(x), feats


class FrameDiscriminator(_PatchGAN):
    """PatchGAN on single frames: three stride-2 4x4 convs, one stride-1 conv, a 1-channel logit map.

    For a 64x64 input the logits are [N, 1, 8, 8]; each logit sees a ~46-pixel patch.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, sn = cfg.d_channels, cfg.spectral_norm
        widths = [d, 2 * d, 4 * d, 8 * d]
        layers = [_layer(nn.Conv2d(3, widths[0], 4, stride=2, padding=1), widths[0], False, sn)]
        for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
            stride, kernel = (2, 4) if i < 2 else (1, 3)
            layers.append(_layer(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=1), c_out, True, sn))
        self.layers = nn.ModuleList(layers)
        head = nn.Conv2d(widths[-1], 1, 3, padding=1)
        self.head = spectral_norm(head) if sn else head

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x [N, 3, H, W] in [-1, 1] -> (logits [N, 1, H/8, W/8], raw; feature maps of every layer)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected frames [N, 3, H, W]; got shape {tuple(x.shape)} "
                             "(flatten [B, T, 3, H, W] with .flatten(0, 1))")
        return self.run(x)


class ClipDiscriminator(_PatchGAN):
    """3D PatchGAN over [B, T, 3, H, W]: 3x4x4 convs, space halved by each of the first three, time by the
    third; a 3x3x3 logit conv. For 8 frames of 64x64 the logits are [B, 1, 4, 8, 8]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, sn = cfg.d_channels, cfg.spectral_norm
        widths = [d, 2 * d, 4 * d]
        strides = [(1, 2, 2), (1, 2, 2), (2, 2, 2)]
        layers, c_in = [], 3
        for i, (c_out, stride) in enumerate(zip(widths, strides)):
            conv = nn.Conv3d(c_in, c_out, (3, 4, 4), stride=stride, padding=1)
            layers.append(_layer(conv, c_out, i > 0, sn))
            c_in = c_out
        self.layers = nn.ModuleList(layers)
        head = nn.Conv3d(widths[-1], 1, 3, padding=1)
        self.head = spectral_norm(head) if sn else head

    def forward(self, clip: Tensor) -> tuple[Tensor, list[Tensor]]:
        """clip [B, T, 3, H, W] in [-1, 1] -> (logits [B, 1, T', H/8, W/8], raw; feature maps)."""
        if clip.ndim != 5 or clip.shape[2] != 3:
            raise ValueError(f"expected clips [B, T, 3, H, W]; got shape {tuple(clip.shape)}")
        return self.run(clip.transpose(1, 2))  # Conv3d wants [B, C, T, H, W]


class Discriminators(nn.Module):
    """The frame PatchGAN and (with ``model.clip_discriminator``) the clip discriminator, as one module.

    ``forward(clips, context)`` -> (logits, features): one entry per discriminator, in the order of
    ``names``. The frame discriminator judges the future frames (the context is ground truth in both
    real and fake clips); the clip discriminator judges the whole clip. Outputs are plain lists and
    tuples of tensors (DeepSpeed's ZeRO-3 hooks look inside those, not inside dataclasses).
    """

    def __init__(self, cfg: ModelConfig, checkpointing: str = "off"):
        super().__init__()
        if checkpointing not in CHECKPOINTING:
            raise ValueError(f"checkpointing {checkpointing!r}; allowed: {', '.join(CHECKPOINTING)}")
        self.frame = FrameDiscriminator(cfg)
        self.clip = ClipDiscriminator(cfg) if cfg.clip_discriminator else None
        self.names = ("frame", "clip") if self.clip is not None else ("frame",)
        # block: every layer recomputed in backward. Not with spectral norm: its power iteration updates its
        # vectors on every forward, so a recomputation would normalise with another weight than the forward did.
        for d in (self.frame, self.clip):
            if d is not None:
                d.recompute_layers = checkpointing == "block" and not cfg.spectral_norm

    def forward(self, clips: Tensor, context: int) -> tuple[list[Tensor], list[list[Tensor]]]:
        """clips [B, T, 3, H, W] in [-1, 1] (context frames first) -> ([logits per D], [features per D])."""
        frame_logits, frame_feats = self.frame(clips[:, context:].flatten(0, 1))
        if self.clip is None:
            return [frame_logits], [frame_feats]
        clip_logits, clip_feats = self.clip(clips)
        return [frame_logits, clip_logits], [frame_feats, clip_feats]


def split_real_fake(outputs: list[Tensor], parts: int = 2) -> tuple[list[Tensor], list[Tensor]]:
    """Outputs (logits, or one layer's features) of one forward on ``cat([real, fake_1, ..., fake_k])``
    (``parts`` = k + 1 equal blocks along dim 0) -> (real part, all fakes' part), per discriminator."""
    cut = [x.shape[0] // parts for x in outputs]
    if any(c * parts != x.shape[0] for c, x in zip(cut, outputs)):
        raise ValueError(f"outputs of {[x.shape[0] for x in outputs]} rows do not split into {parts} equal parts")
    return [x[:c] for c, x in zip(cut, outputs)], [x[c:] for c, x in zip(cut, outputs)]
