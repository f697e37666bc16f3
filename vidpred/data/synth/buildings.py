"""Buildings as boxes beside the road: a facade toward the road with rows of windows, in perspective, and
an end wall toward the camera. Facades are built column-wise as runs of a few colour codes and expanded to
pixels the same way the ground is."""

from __future__ import annotations

import math

import numpy as np

from .motion import Z_FAR, Z_NEAR
from .paint import fill, jitter, rgb

BUILDING_COLOURS = [rgb(*c) for c in [
    (190, 170, 140), (150, 82, 62), (140, 140, 146), (205, 203, 196), (112, 122, 142), (170, 150, 120)]]


def make_buildings(sc, rng: np.random.Generator, s_lo: float, s_hi: float) -> list[dict]:
    """Rows of buildings on both sides of the road of scene ``sc`` between arc lengths ``s_lo`` and ``s_hi``,
    farthest first."""
    out = []
    for side in (-1, 1):
        s = s_lo - rng.uniform(0, 30)
        while s < s_hi:
            length = rng.uniform(10, 40)
            if rng.random() < 0.85:
                h = rng.uniform(5, 22)
                col = sc.lit(jitter(rng, BUILDING_COLOURS[rng.integers(len(BUILDING_COLOURS))], 10))
                wcol = rgb(235, 205, 130) if sc.light < 0.75 else sc.lit(rgb(55, 66, 82))
                # facade, roof down: wall (1), rows of windows (2) on each 3.2 m floor, a base band (3)
                floors = np.arange(0.0, h - 2.8, 3.2)[::-1]
                Y = np.concatenate([[h], np.stack([floors + 2.4, floors + 0.9], 1).ravel(), [0.6, 0.0]])
                codes_win = np.array([0, 1] + [2, 1] * len(floors) + [3, 0], np.int8)
                out.append(dict(s1=s, s2=s + length, side=side, off=sc.Wr + sc.sh + rng.uniform(6.5, 12),
                                h=h, depth=rng.uniform(8, 20), col=col, win=rng.uniform(2.5, 4.0),
                                dY=sc.hc - Y, codes_win=codes_win,
                                codes_wall=np.where(codes_win == 2, 1, codes_win).astype(np.int8),
                                pal=np.stack([sc.haze, col * 0.78, wcol, col * 0.5])))
            s += length + rng.uniform(2, 15)
    out.sort(key=lambda b: -b["s1"])
    return out


def draw_buildings(sc, out: np.ndarray, yh: float, s0: float, road_x) -> None:
    """The buildings in view from arc length ``s0``, far to near (``road_x`` as for the ground)."""
    if not len(sc.bld_s1):
        return
    vis = np.flatnonzero((sc.bld_s2 - s0 > Z_NEAR) & (sc.bld_s1 - s0 < Z_FAR))
    if len(vis):
        z1 = np.maximum(sc.bld_s1[vis] - s0, Z_NEAR)
        z2 = sc.bld_s2[vis] - s0
        x1, x2 = road_x(z1) + sc.bld_u[vis], road_x(z2) + sc.bld_u[vis]
        for k, j in enumerate(vis):
            _building(sc, out, yh, s0, sc.buildings[j], z1[k], z2[k], x1[k], x2[k])


def _building(sc, out, yh, s0, b, z1, z2, x1, x2) -> None:
    """One box, its facade from depth z1 (lateral x1) to z2 (x2): the facade a perspective quad with rows of
    windows, built column-wise from row breakpoints, and the end wall toward the camera."""
    W, H, f, hc = sc.W, sc.H, sc.f, sc.hc
    c1, c2 = sc.cx + f * x1 / z1, sc.cx + f * x2 / z2
    h = b["h"]
    hz = float(sc.hz(0.5 * (z1 + z2)))
    lo, hi = max(int(min(c1, c2)), 0), min(int(math.ceil(max(c1, c2))), W)
    if hi > lo and abs(c2 - c1) > 0.5:
        w = np.clip((np.arange(lo, hi) + 0.5 - c1) / (c2 - c1), 0, 1)
        fz = f * ((1 - w) / z1 + w / z2)                  # 1/z is linear in screen x on a plane
        r0 = max(int(yh + (hc - h) * fz.min()), 0)
        r1 = min(int(math.ceil(yh + hc * fz.max())), H)
        if r1 > r0:
            nr, nc = r1 - r0, hi - lo
            # per column, rows where the facade code changes (heights from the roof down to the ground)
            edges = np.empty((nc, len(b["dY"]) + 2), np.intp)
            edges[:, 0], edges[:, -1] = 0, nr
            edges[:, 1:-1] = np.ceil((yh - 0.5 - r0) + fz[:, None] * b["dY"][None, :])
            np.clip(edges, 0, nr, out=edges)
            wincol = np.mod((f / fz + (s0 - b["s1"])) / b["win"], 1.0) > 0.35
            codes = np.where(wincol[:, None], b["codes_win"][None, :], b["codes_wall"][None, :])
            code = np.repeat(codes.ravel(), np.diff(edges, axis=1).ravel()).reshape(nc, nr).T
            pal = sc.mix(b["pal"], hz)
            np.copyto(out[r0:r1, lo:hi].view("V3")[..., 0], np.take(pal.view("V3").ravel(), code),
                      where=code > 0)
    if b["s1"] - s0 >= Z_NEAR:              # the end wall facing the camera
        ce = sc.cx + f * (x1 + b["side"] * b["depth"]) / z1
        fill(out, min(c1, ce), max(c1, ce), yh + f * (hc - h) / z1, yh + f * hc / z1, sc.mix(b["col"], hz))
