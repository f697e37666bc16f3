"""Vehicles: traffic ahead in lanes that closes in and pulls away at its own speed (brake lights when it
slows), oncoming traffic on two-lane roads, and the hood of the ego car in half the clips. Each vehicle is a
few boxes seen from behind (or, oncoming, from the front)."""

from __future__ import annotations

import numpy as np

from .motion import Z_FAR, smooth
from .paint import fill, jitter, rgb

CAR_COLOURS = [rgb(*c) for c in [
    (230, 230, 228), (25, 25, 28), (160, 162, 168), (170, 30, 30), (30, 60, 140),
    (40, 80, 50), (225, 185, 40), (110, 110, 115), (90, 40, 30), (200, 200, 190)]]


def make_traffic(sc, rng: np.random.Generator, t: np.ndarray, fps: int) -> tuple[list[dict], float]:
    """The vehicles of scene ``sc`` (same direction first, with their distance ahead per frame, then
    oncoming, with their position along the road at t = 0) and the speed of the oncoming traffic."""
    vehicles = []
    lanes = [sc.ego_lane] + ([] if sc.two_way else
                             [k for k in range(sc.L) if k != sc.ego_lane and rng.random() < 0.7])
    for lane in lanes:
        z, brake = _follow(sc, rng, t, fps, ego=lane == sc.ego_lane)
        vehicles.append(_vehicle(sc, rng, lane, z, brake, oncoming=False))
    v_on = rng.uniform(8, 25)      # oncoming traffic (two-way roads): world position s0 - v_on t
    if sc.two_way:
        s = sc.s[0] + rng.uniform(5, 120)
        s_end = sc.s[-1] + Z_FAR + v_on * (len(t) / fps)
        while s < s_end:
            vehicles.append(_vehicle(sc, rng, 0, s, None, oncoming=True))
            s += rng.exponential(90) + 20
    return vehicles, v_on


def _follow(sc, rng, t, fps, ego: bool) -> tuple[np.ndarray, np.ndarray]:
    """Distance ahead per frame of a vehicle that steers its speed toward a wandering target distance
    (braking and accelerating within limits; in the ego lane it keeps at least 5 m), and whether it brakes."""
    zc = rng.uniform(10, 45) if ego else rng.uniform(-5, 80)
    amp = rng.uniform(0.2, 0.6) * (zc if ego else 40)
    target = zc + amp * smooth(rng, t, 2, 0.03, 0.2)
    z = np.empty(len(t))
    vo = np.empty(len(t))
    zi, vi = target[0], sc.v[0]
    for k in range(len(t)):
        want = max(0.0, sc.v[k] + 0.6 * (target[k] - zi))
        vi += min(max(want - vi, -6.0 / fps), 3.0 / fps)    # brake <= 6, accelerate <= 3 m/s²
        zi += (vi - sc.v[k]) / fps
        if ego and zi < 5.0:
            zi, vi = 5.0, min(vi, sc.v[k])
        z[k], vo[k] = zi, vi
    return z, np.concatenate([[False], np.diff(vo) < -1.0 / fps])


def _vehicle(sc, rng, lane, z, brake, oncoming) -> dict:
    kind = rng.choice(["car", "van", "truck"], p=[0.75, 0.15, 0.1])
    w = {"car": rng.uniform(1.7, 1.95), "van": rng.uniform(1.9, 2.1), "truck": rng.uniform(2.3, 2.55)}[kind]
    h = {"car": rng.uniform(1.35, 1.6), "van": rng.uniform(1.9, 2.4), "truck": rng.uniform(3.0, 3.8)}[kind]
    col = sc.lit(jitter(rng, CAR_COLOURS[rng.integers(len(CAR_COLOURS))], 10))
    if kind == "truck":
        col = sc.lit(jitter(rng, rgb(200, 200, 200) if rng.random() < 0.6 else col, 10))
    u = -sc.Wr + (lane + 0.5) * sc.lw + rng.uniform(-0.25, 0.25)
    return dict(kind=kind, w=w, h=h, col=col, u=u, z=z, brake=brake, oncoming=oncoming)  # z: s0 if oncoming


def draw_vehicle(sc, i: int, out: np.ndarray, v: dict, cc: float, rb: float, s: float, h: float) -> None:
    """Vehicle ``v`` in frame i: its base at screen column ``cc``, row ``rb``; ``s`` pixels per metre; haze ``h``."""
    w, ht, col = v["w"], v["h"], v["col"]
    hw = w / 2
    mix = sc.mix

    def box(x0, x1, y0, y1, colour):
        fill(out, cc + x0 * s, cc + x1 * s, rb - y1 * s, rb - y0 * s, mix(colour, h))

    dark = sc.c_tyre
    fill(out, cc - (hw + 0.08) * s, cc + (hw + 0.08) * s, rb - 0.25 * s, rb + max(1.0, 0.04 * s),
         mix(sc.asphalt * 0.35, h))                                      # shadow
    box(-hw + 0.05, -hw + 0.35, 0.0, 0.5, dark)                          # wheels
    box(hw - 0.35, hw - 0.05, 0.0, 0.5, dark)
    if v["kind"] == "truck":
        box(-hw, hw, 0.45, ht, col)
        box(-hw, hw, 0.4, 0.6, col * 0.45)                               # bumper
        box(-0.02, 0.02, 0.7, ht - 0.1, col * 0.7)                       # door seam
        lamp = sc.c_head if v["oncoming"] else sc.c_brake if v["brake"][i] else sc.c_tail
        box(-hw + 0.1, -hw + 0.35, 0.65, 0.85, lamp)
        box(hw - 0.35, hw - 0.1, 0.65, 0.85, lamp)
        return
    body_top = 0.95 if v["kind"] == "car" else ht * 0.55
    box(-hw, hw, 0.3, body_top, col)                                     # body
    box(-hw * 0.86, hw * 0.86, body_top, ht, col * 0.85)                 # cabin
    box(-hw * 0.76, hw * 0.76, body_top + 0.05, ht - 0.08,
        sc.c_windscreen if v["oncoming"] else sc.c_rear_window)          # window
    box(-hw, hw, 0.3, 0.45, col * 0.5)                                   # bumper
    box(-0.17, 0.17, 0.45, 0.58, sc.c_plate)                             # plate
    if v["oncoming"]:
        lamp = sc.c_head
    else:
        lamp = sc.c_brake if v["brake"][i] else sc.c_tail
    box(-hw + 0.05, -hw + 0.35, body_top - 0.25, body_top - 0.08, lamp)
    box(hw - 0.35, hw - 0.05, body_top - 0.25, body_top - 0.08, lamp)


def make_hood(sc, rng: np.random.Generator):
    """In half the clips, the hood of the ego car at the bottom of the frame: (top row, mask, shaded colours
    as 3-byte items); None in the others."""
    if rng.random() >= 0.5:
        return None
    W, H = sc.W, sc.H
    depth = H * rng.uniform(0.05, 0.1)
    xs = (np.arange(W) + 0.5 - sc.cx) / (W * 0.55)
    edge = H - depth * np.sqrt(np.clip(1 - xs ** 2, 0, 1))
    top = int(edge.min())
    rows = np.arange(top, H)[:, None] + 0.5
    mask = rows >= edge[None, :]
    col = jitter(rng, rng.choice(CAR_COLOURS), 8) * 0.5 * sc.light
    shade = (col[None, :] * np.linspace(1.0, 0.55, H - top)[:, None]).astype(np.uint8)
    return top, mask, shade.view("V3")


def draw_hood(out: np.ndarray, hood) -> None:
    top, mask, shade = hood
    np.copyto(out[top:].view("V3")[..., 0], shade, where=mask)
