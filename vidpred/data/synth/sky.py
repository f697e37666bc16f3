"""The sky: a panorama (gradient, clouds, hills or a city skyline) wider than the frame, drawn once per clip
and panned as the road turns."""

from __future__ import annotations

import math

import numpy as np

from .paint import rgb

SKIES = {  # zenith, horizon, light on the ground
    "day": (rgb(62, 118, 200), rgb(185, 210, 232), 1.0),
    "overcast": (rgb(140, 146, 158), rgb(200, 202, 206), 0.82),
    "dusk": (rgb(45, 60, 115), rgb(235, 160, 110), 0.68),
}


def make_sky(sc, rng: np.random.Generator, weather: str) -> tuple[np.ndarray, np.ndarray]:
    """The panorama of scene ``sc``, uint8 (rows down to just below the lowest horizon, wide enough for
    all the turning of the clip, 3), and its column offset per frame (it pans with the road heading)."""
    psi = sc.curve.heading(sc.s)
    psi_min, psi_max = float(psi.min()), float(psi.max())
    off = (psi - psi_min) * sc.f
    Hs = int(math.ceil(sc.yh.max())) + 2
    Wp = int(math.ceil((psi_max - psi_min) * sc.f)) + sc.W + 2

    y = (Hs - np.arange(Hs) - 0.5) / max(Hs, 1)                  # 1 at the top, 0 at the horizon
    g = np.clip(y, 0, 1) ** 0.6
    col = sc.hor[None, :] * (1 - g[:, None]) + sc.zen[None, :] * g[:, None]
    pano = np.broadcast_to(col[:, None, :], (Hs, Wp, 3)).astype(np.float32)
    pano = _clouds(sc, rng, pano, y, weather)
    heights, hill_col = _skyline(sc, rng, Wp)
    rows = (Hs - np.arange(Hs) - 0.5)[:, None]
    hill = rows <= heights[None, :]
    pano = np.where(hill[..., None], hill_col, pano)
    return np.clip(pano, 0, 255).astype(np.uint8), off


def _clouds(sc, rng, pano: np.ndarray, y: np.ndarray, weather: str) -> np.ndarray:
    """Clouds over the gradient: a few octaves of smooth noise, thresholded by the cover and thinned
    toward the horizon."""
    from PIL import Image

    Hs, Wp = pano.shape[:2]
    cover = {"day": rng.uniform(0.0, 0.6), "overcast": rng.uniform(0.5, 0.9), "dusk": rng.uniform(0, 0.5)}[weather]
    if cover <= 0.05:
        return pano
    noise = np.zeros((Hs, Wp), np.float32)
    for octave, weight in ((6, 0.55), (14, 0.3), (32, 0.15)):
        small = rng.random((max(2, octave * Hs // Wp + 2), octave + 2)).astype(np.float32)
        big = Image.fromarray(small, mode="F").resize((Wp, Hs), Image.BICUBIC)
        noise += weight * np.asarray(big)
    dens = np.clip((noise - (1 - cover)) * 3.0, 0, 1) * np.clip(y * 3, 0, 1)[:, None]
    cloud = sc.hor * 0.25 + rgb(235, 235, 235) * 0.75 if weather != "dusk" else rgb(220, 150, 130)
    if weather == "overcast":
        cloud = rgb(175, 178, 184)
    return pano * (1 - dens[..., None]) + cloud * dens[..., None]


def _skyline(sc, rng, Wp: int) -> tuple[np.ndarray, np.ndarray]:
    """Height (px above the horizon) per panorama column and colour of the skyline: blocks in town,
    hills elsewhere."""
    f = sc.f
    if sc.kind == "urban":   # skyline of blocks
        heights = np.zeros(Wp)
        x = 0
        while x < Wp:
            w = int(rng.uniform(0.02, 0.08) * f) + 1
            heights[x:x + w] = rng.uniform(0.01, 0.09) * f
            x += w + int(rng.uniform(0, 0.03) * f)
        return heights, sc.haze * 0.75 + rgb(90, 95, 110) * 0.25
    az = np.arange(Wp) / f
    amp = rng.uniform(0.005, 0.05) * f
    heights = np.full(Wp, amp * 0.5)
    for k in range(4):
        heights += amp * rng.uniform(0.1, 0.5) * np.sin(az * rng.uniform(1.5, 12) + rng.uniform(0, 6.3))
    return np.clip(heights, 0.0, None), sc.haze * 0.7 + sc.lit(rgb(60, 85, 70)) * 0.3


def draw_sky(sc, out: np.ndarray, i: int, yi: int) -> None:
    """Rows [0, yi) of frame i: the panorama, shifted by the road heading."""
    Hs = len(sc.pano)
    off = int(round(sc.pano_off[i]))
    out[:yi] = sc.pano[Hs - yi:Hs, off:off + sc.W]
