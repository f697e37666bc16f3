"""Low-level paint: colours as float32 RGB triples, rectangle fills and masked fills into uint8 frames."""

from __future__ import annotations

import numpy as np


def rgb(*c: float) -> np.ndarray:
    return np.array(c, np.float32)


def jitter(rng: np.random.Generator, c: np.ndarray, amount: float = 12.0) -> np.ndarray:
    return np.clip(c + rng.uniform(-amount, amount, 3), 0, 255).astype(np.float32)


def fill(out: np.ndarray, c0: float, c1: float, r0: float, r1: float, colour: np.ndarray) -> None:
    """Fill the screen rectangle [c0, c1) x [r0, r1) (floats, pixel edges); thin ones keep one pixel."""
    H, W = out.shape[:2]
    a, b = int(c0 + 0.5), int(c1 + 0.5)
    if b <= a and c1 - c0 > 0.3:
        b = a + 1
    top, bot = int(r0 + 0.5), int(r1 + 0.5)
    if bot <= top and r1 - r0 > 0.3:
        bot = top + 1
    a, b, top, bot = max(a, 0), min(b, W), max(top, 0), min(bot, H)
    if a < b and top < bot:
        out[top:bot, a:b] = colour


def paint(region: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """region[mask] = colour for a uint8 (h, w, 3) view, moving whole 3-byte pixels."""
    np.copyto(region.view("V3")[..., 0], colour.view("V3"), where=mask)

