"""Roadside objects fixed in the world beside the road: reflector posts, trees, lamp posts and signs. They are
placed along the whole drive up front; each frame draws the visible ones with a few slice fills, so they
grow and slide outward as they approach."""

from __future__ import annotations

import math

import numpy as np

from .paint import fill, jitter, paint, rgb


def make_objects(sc, rng: np.random.Generator, s_lo: float, s_hi: float) -> list[tuple]:
    """The objects beside the road of scene ``sc`` between arc lengths ``s_lo`` and ``s_hi``: a list of
    (s, lateral position u, kind, params) sorted by s."""
    objs = []
    edge = sc.Wr + sc.sh
    if sc.kind != "urban" and rng.random() < 0.8:  # reflector posts
        gap = rng.uniform(20, 50)
        for side in (-1, 1):
            objs += [(s, side * (edge + 0.4), "post", None) for s in _every(rng, gap, s_lo, s_hi)]
    if sc.kind != "highway" or rng.random() < 0.5:  # trees
        mean_gap = rng.uniform(6, 30) if sc.kind == "rural" else rng.uniform(15, 40)
        for side in (-1, 1):
            s = s_lo + rng.exponential(mean_gap)
            while s < s_hi:
                conifer = rng.random() < (0.5 if sc.kind == "rural" else 0.2)
                h = rng.uniform(4, 12)
                lat = edge + rng.uniform(1.0, 6.0)
                params = (h, rng.uniform(0.25, 0.45) * h, conifer, sc.lit(jitter(rng, rgb(48, 98, 40), 18)))
                objs.append((s, side * lat, "tree", params))
                s += rng.exponential(mean_gap) + 2
    if sc.kind != "rural" or rng.random() < 0.2:  # lamp posts
        gap = rng.uniform(25, 45)
        side0 = int(rng.choice([-1, 1]))
        for side in ((-1, 1) if rng.random() < 0.5 else (side0,)):
            objs += [(s, side * (edge + 0.3), "lamp", side) for s in _every(rng, gap, s_lo, s_hi)]
    s = s_lo + rng.exponential(120)
    while s < s_hi:   # signs, blue or green
        colour = rgb(30, 60, 140) if rng.random() < 0.5 else rgb(30, 110, 60)
        side = int(rng.choice([-1, 1]))
        objs.append((s, side * (edge + 0.6), "sign", (rng.uniform(1.2, 2.5), sc.lit(colour))))
        s += rng.exponential(150) + 30
    objs.sort(key=lambda o: o[0])
    return objs


def _every(rng: np.random.Generator, gap: float, s_lo: float, s_hi: float):
    """Arc lengths every ``gap`` m from a random start in [s_lo, s_lo + gap) up to ``s_hi``."""
    s = s_lo + rng.uniform(0, gap)
    while s < s_hi:
        yield s
        s += gap


def draw_object(sc, out: np.ndarray, obj: tuple, cc: float, rb: float, s: float, h: float) -> None:
    """One object: its base at screen column ``cc``, row ``rb``; ``s`` pixels per metre; haze ``h``."""
    _, _, kind, params = obj
    mix = sc.mix
    if kind == "post":
        fill(out, cc - 0.06 * s, cc + 0.06 * s, rb - 1.0 * s, rb, mix(sc.c_post, h))
        fill(out, cc - 0.06 * s, cc + 0.06 * s, rb - 1.0 * s, rb - 0.82 * s, mix(sc.c_dark, h))
        fill(out, cc - 0.04 * s, cc + 0.04 * s, rb - 0.78 * s, rb - 0.7 * s, mix(sc.c_reflector, h))
    elif kind == "lamp":
        side = params
        grey = mix(sc.c_pole, h)
        fill(out, cc - 0.09 * s, cc + 0.09 * s, rb - 8.0 * s, rb, grey)
        arm = cc - side * 1.6 * s
        fill(out, min(cc, arm), max(cc, arm), rb - 8.0 * s, rb - 7.85 * s, grey)
        fill(out, min(arm, arm + side * 0.5 * s), max(arm, arm + side * 0.5 * s), rb - 7.95 * s, rb - 7.75 * s,
             mix(sc.c_lamp, h))
    elif kind == "sign":
        panel_w, colour = params
        fill(out, cc - 0.05 * s, cc + 0.05 * s, rb - 2.2 * s, rb, mix(sc.c_pole, h))
        fill(out, cc - panel_w / 2 * s, cc + panel_w / 2 * s, rb - 3.2 * s, rb - 2.1 * s, mix(colour, h))
        fill(out, cc - panel_w / 2 * s * 0.8, cc + panel_w / 2 * s * 0.8, rb - 2.75 * s, rb - 2.6 * s,
             mix(sc.mark, h))
    else:
        _tree(sc, out, params, cc, rb, s, h)


def _tree(sc, out, params, cc, rb, s, h) -> None:
    """A trunk and a crown: a cone for a conifer, two ellipses for a broadleaf."""
    ht, r, conifer, green = params
    mix = sc.mix
    trunk_h = ht * (0.25 if conifer else 0.4)
    fill(out, cc - 0.15 * s, cc + 0.15 * s, rb - trunk_h * s - 1, rb, mix(sc.c_trunk, h))
    top, bot, rx = rb - ht * s, rb - trunk_h * s, r * s
    H, W = out.shape[:2]
    r0, r1 = max(int(top), 0), min(int(math.ceil(bot)), H)
    c0, c1 = max(int(cc - rx), 0), min(int(math.ceil(cc + rx)), W)
    if r1 <= r0 or c1 <= c0:
        return
    rr = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
    xx = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - cc
    region = out[r0:r1, c0:c1]
    if conifer:
        half = rx * np.clip((rr - top) / max(bot - top, 1e-6), 0, 1)
        paint(region, np.abs(xx) <= half, mix(green * 0.8, h))
        paint(region, (np.abs(xx + 0.25 * half) <= 0.5 * half) & (rr > top + 0.2 * (bot - top)), mix(green, h))
    else:
        cy, ry = 0.5 * (top + bot), 0.5 * (bot - top)
        e = (xx / max(rx, 0.5)) ** 2 + ((rr - cy) / max(ry, 0.5)) ** 2
        paint(region, e <= 1, mix(green * 0.8, h))
        e2 = ((xx + 0.2 * rx) / max(rx * 0.7, 0.5)) ** 2 + ((rr - cy + 0.2 * ry) / max(ry * 0.7, 0.5)) ** 2
        paint(region, e2 <= 1, mix(green * 1.1, h))
