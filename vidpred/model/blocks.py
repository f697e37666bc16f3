"""Building blocks of the VPGAN generator: conv stages, recurrent cells on feature maps, Gaussian heads.

Every normalisation here is GroupNorm (per sample: no batch statistics, no running buffers), so a batch
of clips is K independent clips, whatever K is.
"""

from __future__ import annotations

import math

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def recomputed(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` as a checkpointed region: what autograd would save inside it is dropped after the forward
    and recomputed in backward (``torch.utils.checkpoint``, non-reentrant: gradients flow to inputs passed in
    lists too, and parameter hooks such as DeepSpeed ZeRO-3's fire again in the recomputation). The CPU and
    device RNG states are stashed and restored around the recomputation, so noise drawn inside the region
    (the latent z) is drawn again identically. Without grad mode (inference) it is a plain call."""
    if not torch.is_grad_enabled():
        return fn(*args)
    return checkpoint(fn, *args, use_reentrant=False)


def recomputed_if(on: bool, fn: Callable[..., Any], *args: Any) -> Any:
    """:func:`recomputed` when ``on``, else a plain ``fn(*args)``."""
    return recomputed(fn, *args) if on else fn(*args)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(channels, 8), channels)


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv -> GroupNorm -> SiLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), group_norm(c_out), nn.SiLU())


class ResBlock(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x)))))): pre-activation residual block at constant width."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            group_norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            group_norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def stage(c_in: int, c_out: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """A conv block that changes width (and resolution with stride 2), then ``blocks - 1`` residual blocks."""
    return nn.Sequential(conv_block(c_in, c_out, stride), *(ResBlock(c_out) for _ in range(blocks - 1)))


class ConvGRUCell(nn.Module):
    """GRU on feature maps: h' = (1 - u) * h + u * tanh(W [x, r * h]). State: h."""

    def __init__(self, c_in: int, c_hidden: int):
        super().__init__()
        self.gates = nn.Conv2d(c_in + c_hidden, 2 * c_hidden, 3, padding=1)
        self.candidate = nn.Conv2d(c_in + c_hidden, c_hidden, 3, padding=1)

    def zero_state(self, like: Tensor) -> tuple[Tensor, ...]:
        return (torch.zeros_like(like),)

    def forward(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        (h,) = state
        r, u = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        c = torch.tanh(self.candidate(torch.cat([x, r * h], dim=1)))
        h = (1 - u) * h + u * c
        return h, (h,)


class ConvLSTMCell(nn.Module):
    """LSTM on feature maps (Shi et al. 2015, without peepholes). State: (h, c)."""

    def __init__(self, c_in: int, c_hidden: int):
        super().__init__()
        self.gates = nn.Conv2d(c_in + c_hidden, 4 * c_hidden, 3, padding=1)

    def zero_state(self, like: Tensor) -> tuple[Tensor, ...]:
        return torch.zeros_like(like), torch.zeros_like(like)

    def forward(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


CELLS = {"gru": ConvGRUCell, "lstm": ConvLSTMCell}


class Dynamics(nn.Module):
    """A stack of recurrent cells on the bottleneck maps; each layer after the first adds a residual."""

    def __init__(self, kind: str, c_in: int, c_hidden: int, layers: int):
        super().__init__()
        self.cells = nn.ModuleList(CELLS[kind](c_in if i == 0 else c_hidden, c_hidden) for i in range(layers))

    def zero_state(self, like: Tensor) -> list[tuple[Tensor, ...]]:
        return [cell.zero_state(like) for cell in self.cells]

    def forward(self, x: Tensor, states: list[tuple[Tensor, ...]]) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
        new_states = []
        for i, (cell, state) in enumerate(zip(self.cells, states)):
            h, state = cell(x, state)
            x = h if i == 0 else x + h
            new_states.append(state)
        return x, new_states


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
