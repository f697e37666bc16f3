"""Discriminators for VPGAN. They return raw logits (no sigmoid) plus their feature maps.

The training step runs ONE forward on ``torch.cat([real, fake.detach()])`` for the D loss, so the
discriminator must treat every sample independently: no BatchNorm (GroupNorm is per-sample).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from vidpred.config import ModelConfig


class FrameDiscriminator(nn.Module):
    """PatchGAN on single frames: three stride-2 4x4 convs, one stride-1 conv, a 1-channel logit map.

    For a 64x64 input the logits are [N, 1, 8, 8]; each logit sees a ~46-pixel patch.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_channels
        widths = [d, 2 * d, 4 * d, 8 * d]
        layers = [nn.Sequential(nn.Conv2d(3, widths[0], 4, stride=2, padding=1), nn.LeakyReLU(0.2))]
        for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
            stride, kernel = (2, 4) if i < 2 else (1, 3)
            layers.append(nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=1),
                nn.GroupNorm(math.gcd(c_out, 8), c_out),
                nn.LeakyReLU(0.2),
            ))
        self.layers = nn.ModuleList(layers)
        self.head = nn.Conv2d(widths[-1], 1, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x [N, 3, H, W] in [-1, 1] -> (logits [N, 1, H/8, W/8], raw; feature maps of every layer)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected frames [N, 3, H, W]; got shape {tuple(x.shape)} "
                             "(flatten [B, T, 3, H, W] with .flatten(0, 1))")
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return self.head(x), feats
