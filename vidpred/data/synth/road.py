"""The ground below the horizon: grass or pavement stripes, shoulders, solid edge lines, lanes of asphalt
and dashed lane lines, in perspective and streaming toward the camera.

It is built per screen row (perspective depth, breakpoints of the lane lines, per-row colours with dash
coverage anti-aliased along the road, haze) and expanded to pixels by one ``np.repeat`` of 3-byte colours."""

from __future__ import annotations

import numpy as np


def coverage(a: np.ndarray, b: np.ndarray, period: float, on: float) -> np.ndarray:
    """Fraction of [a, b] (arrays, a < b) covered by a pattern that is on for ``on`` of every ``period``."""
    def cum(s):
        return np.floor(s / period) * on + np.minimum(np.mod(s, period), on)
    return (cum(b) - cum(a)) / np.maximum(b - a, 1e-9)


def lane_edges(sc) -> tuple[np.ndarray, list[int]]:
    """Lateral breakpoints (m from the road centre) of the ground segments across the road of scene
    ``sc``, and the indices j of the markings (each lies between breakpoints j-1 and j; even j)."""
    Wr, sh, edge_w, dash_w = sc.Wr, sc.sh, sc.edge_w, sc.dash_w
    m = [-Wr - sh, -Wr, -Wr + edge_w]
    for k in range(1, sc.L):
        bk = -Wr + k * sc.lw
        m += [bk - dash_w / 2, bk + dash_w / 2]
    m += [Wr - edge_w, Wr, Wr + sh]
    return np.array(m), list(range(2, len(m), 2))


def draw_ground(sc, i: int, out: np.ndarray, yi: int, yh: float, road_x) -> None:
    """Rows [yi, H) of frame i; ``road_x(z)``: the road centre's lateral position (m) in the camera frame at
    forward distance z."""
    W, H, f, hc = sc.W, sc.H, sc.f, sc.hc
    R = H - yi
    dy = np.arange(yi, H) + 0.5 - yh
    z = f * hc / dy
    za = f * hc / (dy + 0.5)
    zb = f * hc / np.maximum(dy - 0.5, 1e-3)
    s0 = sc.s[i]
    p = f / z                                            # pixels per metre across the road
    xc = sc.cx + p * road_x(z)

    K, m, marks = sc.bp_m.size, sc.bp_m, sc.marks
    bp = np.rint(xc[:, None] + p[:, None] * m[None, :])
    for j in marks:                                      # marking j lies between bp[j-1] and bp[j]
        bp[:, j] = np.maximum(bp[:, j], bp[:, j - 1] + 1)
    np.maximum.accumulate(bp, axis=1, out=bp)
    drawn = {j: bp[:, j] - bp[:, j - 1] for j in marks}
    bp = np.clip(bp, 0, W).astype(np.intp)

    # per-row colours of the K+1 segments: side, shoulder, edge line, lane, line, lane, ..., side
    pal = np.empty((R, K + 1, 3), np.float32)
    stripe = coverage(s0 + za, s0 + zb, 2 * sc.stripe, sc.stripe)[:, None]
    side = sc.side[0] * (1 - stripe) + sc.side[1] * stripe
    pal[:, 0] = side
    pal[:, K] = side
    pal[:, 1] = sc.shoulder
    pal[:, K - 1] = sc.shoulder
    patch = coverage(s0 + za, s0 + zb, 37.0, 13.0)[:, None]
    road = sc.asphalt * (1 - 0.07 * patch)
    pal[:, 3:K:2] = road[:, None, :]
    dash = coverage(s0 + za, s0 + zb, *sc.dash)
    for j in marks:
        solid = j in (2, K - 2)
        alpha = np.clip(p * (sc.edge_w if solid else sc.dash_w) / drawn[j], 0, 1) * (1.0 if solid else dash)
        colour = sc.mark if (solid or not sc.two_way) else sc.centre_col
        pal[:, j] = road * (1 - alpha[:, None]) + colour * alpha[:, None]
    pal8 = sc.mix(pal, sc.hz(z)[:, None, None]).reshape(R * (K + 1), 3)

    # each row is K+1 runs of constant colour: one np.repeat of the palette (as 3-byte items) fills it
    edges = np.empty((R, K + 2), np.intp)
    edges[:, 0], edges[:, 1:-1], edges[:, -1] = 0, bp, W
    runs = np.repeat(pal8.view("V3").ravel(), np.diff(edges, axis=1).ravel())
    out[yi:].view("V3")[..., 0] = runs.reshape(R, W)
