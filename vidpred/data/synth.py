"""Procedural synthetic dashcam clips: a BDD100K-layout tree of H.264 ``.mov`` files, no download needed.

Each clip is a drive seen through a windscreen camera: a sky panorama (gradient, clouds, hills or a city
skyline) that pans as the road turns, a perspective road (2-4 lanes, dashed lane lines, solid edge lines,
shoulders, grass or pavement stripes) whose markings stream toward the camera, roadside objects (reflector
posts, trees, lamp posts, signs, buildings as boxes) that grow and slide outward as they approach, vehicles
ahead in lanes that close in and pull away at their own speed (brake lights when they slow), and on
two-lane roads oncoming traffic. Ego speed, road curvature, lateral drift and camera pitch are smooth
random processes, so predicting the next frame needs motion, not a copy. Lighting (day / overcast / dusk),
haze, lane count, scenery kind, camera height and focal length vary per clip.

Everything is drawn from ``numpy`` Generators spawned from ``seed`` (one stream per part of the scene, so
the size or length of a clip does not reshuffle the rest): the same seed gives the same frames, and, with
the single-threaded encoder and x264's mbtree off (with it on, this libx264 build is not bit-reproducible),
the same bytes. Rendering is vectorised: the ground is built per row (perspective depth, lane-line
breakpoints, per-row colours with dash coverage anti-aliased along the road, haze) and expanded to pixels
by one ``np.repeat`` of 3-byte colours; building facades are column runs expanded the same way; posts,
trees, signs and vehicles are a few slice fills each, drawn far to near.

Speed at 1280x720 @ 30 fps on ONE core (``python benchmarks/synth_speed.py --seconds 2``: process pinned
to one CPU, libx264 ``preset=superfast crf=23 threads=1``, swscale ``threads=1``; Intel Xeon VM, 2 cores
shared with other jobs, load ≈ 2.5): render alone 120 (urban) to 265 (highway) frames/s; render + RGB→yuv420p
+ encode + mux 49-57 frames/s wall (50-73 CPU), mean 52.5 — about 1.75x real time, the slowest clip 1.6x.
The encoder is most of it; ``veryfast`` gives ~35% smaller files but only ~1.05-1.5x real time there.
At the default training size (320x180) it is ~7x real time.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["parse_size", "render_frames", "render_clip", "synth_dataset"]

PRESET = "superfast"   # veryfast: ~35% smaller files, but only ~1.3x real time at 720p on one busy core
CRF = 23
_SIZE_RE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")
_Z_NEAR = 1.5       # metres: nothing nearer than this is drawn
_Z_FAR = 400.0      # metres: objects beyond are lost in the haze


# --------------------------------------------------------------------------------------------- arguments

def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` → ``(1280, 720)``."""
    m = _SIZE_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise ValueError("size must be WIDTHxHEIGHT, e.g. 1280x720")
    return int(m.group(1)), int(m.group(2))


def _check_size(size: tuple[int, int] | str) -> tuple[int, int]:
    if isinstance(size, str):
        size = parse_size(size)
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if w < 16 or h < 16:
        raise ValueError(f"size must be at least 16x16, got {w}x{h}")
    if w % 2 or h % 2:
        raise ValueError(f"size must have an even width and height (H.264 yuv420p), got {w}x{h}")
    return w, h


def _check_fps(fps: int) -> int:
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps < 1:
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    return int(fps)


def _n_frames(seconds: float, fps: int) -> int:
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    return max(1, round(seconds * fps))


# --------------------------------------------------------------------------------------------- helpers

def _smooth(rng: np.random.Generator, t: np.ndarray, terms: int, fmin: float, fmax: float) -> np.ndarray:
    """A smooth random process in [-1, 1]: a few sinusoids with random frequencies and phases."""
    freq = rng.uniform(fmin, fmax, terms)
    phase = rng.uniform(0, 2 * np.pi, terms)
    amp = rng.uniform(0.4, 1.0, terms)
    amp /= amp.sum()
    return (amp[:, None] * np.sin(2 * np.pi * freq[:, None] * t[None, :] + phase[:, None])).sum(0)


def _coverage(a: np.ndarray, b: np.ndarray, period: float, on: float) -> np.ndarray:
    """Fraction of [a, b] (arrays, a < b) covered by a pattern that is on for ``on`` of every ``period``."""
    def cum(s):
        return np.floor(s / period) * on + np.minimum(np.mod(s, period), on)
    return (cum(b) - cum(a)) / np.maximum(b - a, 1e-9)


def _paint(region: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """region[mask] = colour for a uint8 (h, w, 3) view, moving whole 3-byte pixels."""
    np.copyto(region.view("V3")[..., 0], colour.view("V3"), where=mask)


def _rgb(*c: float) -> np.ndarray:
    return np.array(c, np.float32)


def _jitter(rng: np.random.Generator, c: np.ndarray, amount: float = 12.0) -> np.ndarray:
    return np.clip(c + rng.uniform(-amount, amount, 3), 0, 255).astype(np.float32)


def _fill(out: np.ndarray, c0: float, c1: float, r0: float, r1: float, colour: np.ndarray) -> None:
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


_SKIES = {  # zenith, horizon, light on the ground, haze
    "day": (_rgb(62, 118, 200), _rgb(185, 210, 232), 1.0),
    "overcast": (_rgb(140, 146, 158), _rgb(200, 202, 206), 0.82),
    "dusk": (_rgb(45, 60, 115), _rgb(235, 160, 110), 0.68),
}
_CAR_COLOURS = [_rgb(*c) for c in [
    (230, 230, 228), (25, 25, 28), (160, 162, 168), (170, 30, 30), (30, 60, 140),
    (40, 80, 50), (225, 185, 40), (110, 110, 115), (90, 40, 30), (200, 200, 190)]]
_BUILDING_COLOURS = [_rgb(*c) for c in [
    (190, 170, 140), (150, 82, 62), (140, 140, 146), (205, 203, 196), (112, 122, 142), (170, 150, 120)]]


# --------------------------------------------------------------------------------------------- the scene

class _Scene:
    """All random choices of one clip, made up front; ``frame(i)`` draws frame i."""

    def __init__(self, seed: int, n: int, fps: int, W: int, H: int):
        # independent streams per part, so that e.g. the size (which changes how many random numbers the
        # sky needs) or the length (how many roadside objects) does not reshuffle everything else
        rng, rng_sky, rng_obj, rng_bld, rng_traffic = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))
        self.W, self.H, self.n = W, H, n
        t = np.arange(n) / fps
        T = n / fps

        # ---- camera
        self.f = W * rng.uniform(0.78, 0.95)
        self.cx = W / 2 + W * rng.uniform(-0.015, 0.015)
        self.hc = rng.uniform(1.2, 1.6)
        yh0 = H * rng.uniform(0.40, 0.47)
        pitch = H * (0.004 * _smooth(rng, t, 2, 0.05, 0.3) + 0.0015 * _smooth(rng, t, 3, 1.5, 6.0))
        self.yh = yh0 + pitch

        # ---- ego motion: speed, distance along the road
        v0 = rng.uniform(5.0, 33.0)
        freq = rng.uniform(0.03, 0.3, 3)                 # speed wanders, at most ~2.5 m/s² in all
        amp = rng.uniform(0.3, 1.0, 3) * 2.5 / (2 * np.pi * freq * 3)
        phase = rng.uniform(0, 2 * np.pi, 3)
        wave = amp[:, None] * np.sin(2 * np.pi * freq[:, None] * t[None, :] + phase[:, None])
        self.v = np.clip(v0 + wave.sum(0), 0.5, None)
        self.s = rng.uniform(0, 5000) + np.concatenate([[0.0], np.cumsum(self.v[:-1]) / fps])

        # ---- road: curvature kappa(s) = A * sum b_j sin(2 pi s / lam_j + phi_j), integrated analytically
        A = 0.0 if rng.random() < 0.12 else 1.0 / rng.uniform(140, 1200)
        lam = rng.uniform(150, 900, 3)
        b = rng.uniform(0.3, 1.0, 3)
        b /= b.sum()
        self.k_w = 2 * np.pi / lam
        self.k_phi = rng.uniform(0, 2 * np.pi, 3)
        self.k_a1 = -A * b / self.k_w            # K1(s) = sum a1 cos(w s + phi)   (road heading)
        self.k_a2 = -A * b / self.k_w ** 2       # K2(s) = sum a2 sin(w s + phi)   (lateral offset)

        self.kind = rng.choice(["rural", "highway", "urban"], p=[0.4, 0.35, 0.25])
        L = int(rng.choice([2, 3, 4], p=[0.45, 0.35, 0.2]))
        self.two_way = L == 2
        self.L = L
        self.lw = rng.uniform(3.2, 3.8)
        self.Wr = L * self.lw / 2
        self.sh = rng.uniform(0.4, 1.2) if self.kind == "urban" else rng.uniform(0.6, 2.5)
        ego_lane = 1 if self.two_way else int(rng.integers(L))
        self.ego_lane = ego_lane
        self.u_ego = -self.Wr + (ego_lane + 0.5) * self.lw + 0.3 * _smooth(rng, t, 2, 0.04, 0.25)
        if self.two_way:
            self.dash = (rng.uniform(9, 14), rng.uniform(3, 4.5))
            self.centre_col = _rgb(222, 180, 40) if rng.random() < 0.5 else _rgb(225, 225, 220)
        else:
            self.dash = (rng.uniform(9, 15), rng.uniform(2.5, 3.5))
            self.centre_col = _rgb(225, 225, 220)
        self.edge_w, self.dash_w = rng.uniform(0.12, 0.2), rng.uniform(0.1, 0.16)

        # ---- light and palette
        sky = rng.choice(list(_SKIES), p=[0.55, 0.3, 0.15])
        zen, hor, light = _SKIES[sky]
        self.zen, self.hor = _jitter(rng, zen, 10), _jitter(rng, hor, 10)
        self.light = light * rng.uniform(0.9, 1.08)
        self.haze = (self.hor * 0.85 + 0.15 * _rgb(170, 170, 170)).astype(np.float32)
        self.fog = rng.uniform(180, 900) if sky != "overcast" else rng.uniform(120, 450)
        lit = lambda c: np.clip(c * self.light, 0, 255).astype(np.float32)  # noqa: E731
        self.lit = lit
        asphalt = rng.uniform(62, 100)
        self.asphalt = lit(_rgb(asphalt, asphalt, asphalt * 1.04))
        self.mark = lit(_rgb(225, 225, 220))
        self.centre_col = lit(self.centre_col)
        if self.kind == "urban":
            p = rng.uniform(120, 160)
            self.side = (lit(_rgb(p, p * 0.98, p * 0.94)), lit(_rgb(p * 0.93, p * 0.91, p * 0.87)))
            self.shoulder = lit(_rgb(165, 163, 158))
        else:
            if rng.random() < 0.25:   # dry grass
                g = (_rgb(150, 138, 78), _rgb(162, 150, 90))
            else:
                g = (_rgb(66, 112, 42), _rgb(80, 128, 52))
            self.side = (lit(_jitter(rng, g[0], 8)), lit(_jitter(rng, g[1], 8)))
            self.shoulder = lit(_jitter(rng, _rgb(122, 116, 104), 10))
        self.stripe = rng.uniform(8, 25)
        night = self.light < 0.75
        self.c_post, self.c_dark = lit(_rgb(230, 230, 225)), lit(_rgb(30, 30, 30))
        self.c_reflector, self.c_pole = _rgb(235, 120, 30), lit(_rgb(120, 122, 128))
        self.c_trunk = lit(_rgb(88, 64, 40))
        self.c_lamp = _rgb(255, 235, 170) if night else lit(_rgb(200, 200, 190))
        self.c_tyre, self.c_plate = lit(_rgb(22, 22, 24)), lit(_rgb(225, 225, 215))
        self.c_windscreen, self.c_rear_window = lit(_rgb(140, 160, 180)), lit(_rgb(40, 48, 58))
        self.c_brake, self.c_tail = _rgb(255, 40, 30), lit(_rgb(160, 28, 24))
        self.c_head = _rgb(255, 250, 225) if self.light < 0.8 else lit(_rgb(235, 235, 225))
        # lateral breakpoints (m from the road centre) of the ground segments; markings at even j
        m = [-self.Wr - self.sh, -self.Wr, -self.Wr + self.edge_w]
        for k in range(1, L):
            bk = -self.Wr + k * self.lw
            m += [bk - self.dash_w / 2, bk + self.dash_w / 2]
        m += [self.Wr - self.edge_w, self.Wr, self.Wr + self.sh]
        self.bp_m = np.array(m)
        self.marks = list(range(2, len(m), 2))

        # ---- sky panorama (pans with the road heading)
        self.psi = self._K1(self.s)
        psi_min, psi_max = float(self.psi.min()), float(self.psi.max())
        self.pano_off = (self.psi - psi_min) * self.f
        self.Hs = int(math.ceil(self.yh.max())) + 2
        self.pano = self._make_pano(rng_sky, int(math.ceil((psi_max - psi_min) * self.f)) + W + 2, sky)

        # ---- hood of the ego car (half the clips)
        self.hood = None
        if rng.random() < 0.5:
            depth = H * rng.uniform(0.05, 0.1)
            xs = (np.arange(W) + 0.5 - self.cx) / (W * 0.55)
            edge = H - depth * np.sqrt(np.clip(1 - xs ** 2, 0, 1))
            top = int(edge.min())
            rows = np.arange(top, H)[:, None] + 0.5
            mask = rows >= edge[None, :]
            col = _jitter(rng, rng.choice(_CAR_COLOURS), 8) * 0.5 * self.light
            shade = (col[None, :] * np.linspace(1.0, 0.55, H - top)[:, None]).astype(np.uint8)
            self.hood = (top, mask, shade.view("V3"))

        # ---- roadside objects along the road, world-fixed (s, side)
        s_lo, s_hi = self.s[0] - 10, self.s[-1] + _Z_FAR
        self.objects = self._make_objects(rng_obj, s_lo, s_hi)
        has_buildings = self.kind == "urban" or rng.random() < 0.2
        self.buildings = self._make_buildings(rng_bld, s_lo, s_hi) if has_buildings else []
        self.bld_s1 = np.array([b["s1"] for b in self.buildings])
        self.bld_s2 = np.array([b["s2"] for b in self.buildings])
        self.bld_u = np.array([b["side"] * b["off"] for b in self.buildings])

        # ---- traffic
        self.fps = fps
        self.vehicles = self._make_traffic(rng_traffic, t, fps, T)      # same direction first, then oncoming
        same = [v for v in self.vehicles if not v["oncoming"]]
        self.veh_z = np.array([v["z"] for v in same]).reshape(len(same), n)
        self.on_s0 = np.array([v["z"] for v in self.vehicles if v["oncoming"]], np.float64)
        self.veh_u = np.array([v["u"] for v in self.vehicles])

    # ----- road geometry
    def _K1(self, s):
        """Road heading (rad) at arc length s: the integral of the curvature."""
        s = np.asarray(s, np.float64)
        arg = self.k_w[:, None] * s.ravel()[None, :] + self.k_phi[:, None]
        return (self.k_a1[:, None] * np.cos(arg)).sum(0).reshape(s.shape)

    def _K2(self, s):
        """Lateral offset (m, small angles) at arc length s: the integral of the heading."""
        s = np.asarray(s, np.float64)
        arg = self.k_w[:, None] * s.ravel()[None, :] + self.k_phi[:, None]
        return (self.k_a2[:, None] * np.sin(arg)).sum(0).reshape(s.shape)

    def _hz(self, z):
        return 1.0 - np.exp(-np.asarray(z) / self.fog)

    # ----- construction
    def _make_pano(self, rng, Wp: int, sky: str) -> np.ndarray:
        from PIL import Image

        Hs, f = self.Hs, self.f
        y = (Hs - np.arange(Hs) - 0.5) / max(Hs, 1)                  # 1 at the top, 0 at the horizon
        g = np.clip(y, 0, 1) ** 0.6
        col = self.hor[None, :] * (1 - g[:, None]) + self.zen[None, :] * g[:, None]
        pano = np.broadcast_to(col[:, None, :], (Hs, Wp, 3)).astype(np.float32)

        cover = {"day": rng.uniform(0.0, 0.6), "overcast": rng.uniform(0.5, 0.9), "dusk": rng.uniform(0, 0.5)}[sky]
        if cover > 0.05:
            noise = np.zeros((Hs, Wp), np.float32)
            for octave, weight in ((6, 0.55), (14, 0.3), (32, 0.15)):
                small = rng.random((max(2, octave * Hs // Wp + 2), octave + 2)).astype(np.float32)
                big = Image.fromarray(small, mode="F").resize((Wp, Hs), Image.BICUBIC)
                noise += weight * np.asarray(big)
            dens = np.clip((noise - (1 - cover)) * 3.0, 0, 1) * np.clip(y * 3, 0, 1)[:, None]
            cloud = self.hor * 0.25 + _rgb(235, 235, 235) * 0.75 if sky != "dusk" else _rgb(220, 150, 130)
            if sky == "overcast":
                cloud = _rgb(175, 178, 184)
            pano = pano * (1 - dens[..., None]) + cloud * dens[..., None]

        az = np.arange(Wp) / f
        if self.kind == "urban":   # skyline of blocks
            heights = np.zeros(Wp)
            x = 0
            while x < Wp:
                w = int(rng.uniform(0.02, 0.08) * f) + 1
                heights[x:x + w] = rng.uniform(0.01, 0.09) * f
                x += w + int(rng.uniform(0, 0.03) * f)
            hill_col = self.haze * 0.75 + _rgb(90, 95, 110) * 0.25
        else:
            amp = rng.uniform(0.005, 0.05) * f
            heights = np.full(Wp, amp * 0.5)
            for k in range(4):
                heights += amp * rng.uniform(0.1, 0.5) * np.sin(az * rng.uniform(1.5, 12) + rng.uniform(0, 6.3))
            heights = np.clip(heights, 0.0, None)
            hill_col = self.haze * 0.7 + self.lit(_rgb(60, 85, 70)) * 0.3
        rows = (Hs - np.arange(Hs) - 0.5)[:, None]
        hill = rows <= heights[None, :]
        pano = np.where(hill[..., None], hill_col, pano)
        return np.clip(pano, 0, 255).astype(np.uint8)

    def _make_objects(self, rng, s_lo, s_hi):
        """Posts, trees, lamps, signs: list of (s, side, kind, params) sorted by s."""
        objs = []
        edge = self.Wr + self.sh
        if self.kind != "urban" and rng.random() < 0.8:  # reflector posts
            gap = rng.uniform(20, 50)
            for side in (-1, 1):
                s = s_lo + rng.uniform(0, gap)
                while s < s_hi:
                    objs.append((s, side * (edge + 0.4), "post", None))
                    s += gap
        if self.kind != "highway" or rng.random() < 0.5:  # trees
            mean_gap = rng.uniform(6, 30) if self.kind == "rural" else rng.uniform(15, 40)
            for side in (-1, 1):
                s = s_lo + rng.exponential(mean_gap)
                while s < s_hi:
                    conifer = rng.random() < (0.5 if self.kind == "rural" else 0.2)
                    h = rng.uniform(4, 12)
                    lat = edge + rng.uniform(1.0, 6.0)
                    params = (h, rng.uniform(0.25, 0.45) * h, conifer, self.lit(_jitter(rng, _rgb(48, 98, 40), 18)))
                    objs.append((s, side * lat, "tree", params))
                    s += rng.exponential(mean_gap) + 2
        if self.kind != "rural" or rng.random() < 0.2:  # lamp posts
            gap = rng.uniform(25, 45)
            side0 = int(rng.choice([-1, 1]))
            for side in ((-1, 1) if rng.random() < 0.5 else (side0,)):
                s = s_lo + rng.uniform(0, gap)
                while s < s_hi:
                    objs.append((s, side * (edge + 0.3), "lamp", side))
                    s += gap
        s = s_lo + rng.exponential(120)
        while s < s_hi:   # signs
            colour = _CAR_COLOURS[4] if rng.random() < 0.5 else _rgb(30, 110, 60)
            side = int(rng.choice([-1, 1]))
            objs.append((s, side * (edge + 0.6), "sign", (rng.uniform(1.2, 2.5), self.lit(colour))))
            s += rng.exponential(150) + 30
        objs.sort(key=lambda o: o[0])
        self.obj_s = np.array([o[0] for o in objs], np.float64)
        self.obj_u = np.array([o[1] for o in objs], np.float64)
        return objs

    def _make_buildings(self, rng, s_lo, s_hi):
        out = []
        for side in (-1, 1):
            s = s_lo - rng.uniform(0, 30)
            while s < s_hi:
                length = rng.uniform(10, 40)
                if rng.random() < 0.85:
                    h = rng.uniform(5, 22)
                    col = self.lit(_jitter(rng, _BUILDING_COLOURS[rng.integers(len(_BUILDING_COLOURS))], 10))
                    wcol = _rgb(235, 205, 130) if self.light < 0.75 else self.lit(_rgb(55, 66, 82))
                    # facade, roof down: wall (1), rows of windows (2) on each 3.2 m floor, a base band (3)
                    floors = np.arange(0.0, h - 2.8, 3.2)[::-1]
                    Y = np.concatenate([[h], np.stack([floors + 2.4, floors + 0.9], 1).ravel(), [0.6, 0.0]])
                    codes_win = np.array([0, 1] + [2, 1] * len(floors) + [3, 0], np.int8)
                    out.append(dict(s1=s, s2=s + length, side=side, off=self.Wr + self.sh + rng.uniform(6.5, 12),
                                    h=h, depth=rng.uniform(8, 20), col=col, win=rng.uniform(2.5, 4.0),
                                    dY=self.hc - Y, codes_win=codes_win,
                                    codes_wall=np.where(codes_win == 2, 1, codes_win).astype(np.int8),
                                    pal=np.stack([self.haze, col * 0.78, wcol, col * 0.5])))
                s += length + rng.uniform(2, 15)
        out.sort(key=lambda b: -b["s1"])
        return out

    def _make_traffic(self, rng, t, fps, T):
        vehicles = []
        lanes = [self.ego_lane] + ([] if self.two_way else
                                   [k for k in range(self.L) if k != self.ego_lane and rng.random() < 0.7])
        for lane in lanes:
            ego = lane == self.ego_lane
            zc = rng.uniform(10, 45) if ego else rng.uniform(-5, 80)
            amp = rng.uniform(0.2, 0.6) * (zc if ego else 40)
            target = zc + amp * _smooth(rng, t, 2, 0.03, 0.2)
            z = np.empty(len(t))
            vo = np.empty(len(t))
            zi, vi = target[0], self.v[0]
            for k in range(len(t)):
                want = max(0.0, self.v[k] + 0.6 * (target[k] - zi))
                vi += min(max(want - vi, -6.0 / fps), 3.0 / fps)    # brake <= 6, accelerate <= 3 m/s²
                zi += (vi - self.v[k]) / fps
                if ego and zi < 5.0:
                    zi, vi = 5.0, min(vi, self.v[k])
                z[k], vo[k] = zi, vi
            brake = np.concatenate([[False], np.diff(vo) < -1.0 / fps])
            vehicles.append(self._vehicle(rng, lane, z, brake, oncoming=False))
        self.v_on = rng.uniform(8, 25)      # oncoming traffic (two-way roads): world position s0 - v_on t
        if self.two_way:
            s = self.s[0] + rng.uniform(5, 120)
            s_end = self.s[-1] + _Z_FAR + self.v_on * T
            while s < s_end:
                vehicles.append(self._vehicle(rng, 0, s, None, oncoming=True))
                s += rng.exponential(90) + 20
        return vehicles

    def _vehicle(self, rng, lane, z, brake, oncoming):
        kind = rng.choice(["car", "van", "truck"], p=[0.75, 0.15, 0.1])
        w = {"car": rng.uniform(1.7, 1.95), "van": rng.uniform(1.9, 2.1), "truck": rng.uniform(2.3, 2.55)}[kind]
        h = {"car": rng.uniform(1.35, 1.6), "van": rng.uniform(1.9, 2.4), "truck": rng.uniform(3.0, 3.8)}[kind]
        col = self.lit(_jitter(rng, _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))], 10))
        if kind == "truck":
            col = self.lit(_jitter(rng, _rgb(200, 200, 200) if rng.random() < 0.6 else col, 10))
        u = -self.Wr + (lane + 0.5) * self.lw + rng.uniform(-0.25, 0.25)
        return dict(kind=kind, w=w, h=h, col=col, u=u, z=z, brake=brake, oncoming=oncoming)  # z: s0 if oncoming

    # ----- drawing
    def frame(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Draw frame i into ``out`` (a new uint8 (H, W, 3) array if None) and return it."""
        W, H = self.W, self.H
        yh = float(self.yh[i])
        yi = min(max(int(math.ceil(yh)), 1), H - 1)
        if out is None:
            out = np.empty((H, W, 3), np.uint8)
        off = int(round(self.pano_off[i]))
        out[:yi] = self.pano[self.Hs - yi:self.Hs, off:off + W]
        s0 = float(self.s[i])
        k1, k2, u_ego = float(self._K1(s0)), float(self._K2(s0)), float(self.u_ego[i])

        def road_x(z):   # camera-frame lateral position (m) of the road centre at forward distance z
            return self._K2(s0 + z) - k2 - z * k1 - u_ego

        self._ground(i, out, yi, yh, road_x)
        if len(self.bld_s1):
            vis = np.flatnonzero((self.bld_s2 - s0 > _Z_NEAR) & (self.bld_s1 - s0 < _Z_FAR))
            if len(vis):
                z1 = np.maximum(self.bld_s1[vis] - s0, _Z_NEAR)
                z2 = self.bld_s2[vis] - s0
                x1, x2 = road_x(z1) + self.bld_u[vis], road_x(z2) + self.bld_u[vis]
                for k, j in enumerate(vis):
                    self._building(out, yh, s0, self.buildings[j], z1[k], z2[k], x1[k], x2[k])
        self._things(i, out, yh, s0, road_x)
        if self.hood is not None:
            top, mask, shade = self.hood
            band = out[top:]
            np.copyto(band.view("V3")[..., 0], shade, where=mask)
        return out

    def _ground(self, i, out, yi, yh, road_x):
        W, H, f, hc, L = self.W, self.H, self.f, self.hc, self.L
        R = H - yi
        dy = np.arange(yi, H) + 0.5 - yh
        z = f * hc / dy
        za = f * hc / (dy + 0.5)
        zb = f * hc / np.maximum(dy - 0.5, 1e-3)
        s0 = self.s[i]
        p = f / z                                            # pixels per metre across the road
        xc = self.cx + p * road_x(z)

        K, m, marks = self.bp_m.size, self.bp_m, self.marks
        bp = np.rint(xc[:, None] + p[:, None] * m[None, :])
        for j in marks:                                      # marking j lies between bp[j-1] and bp[j]
            bp[:, j] = np.maximum(bp[:, j], bp[:, j - 1] + 1)
        np.maximum.accumulate(bp, axis=1, out=bp)
        drawn = {j: bp[:, j] - bp[:, j - 1] for j in marks}
        bp = np.clip(bp, 0, W).astype(np.intp)

        # per-row colours of the K+1 segments: side, shoulder, edge line, lane, line, lane, ..., side
        pal = np.empty((R, K + 1, 3), np.float32)
        stripe = _coverage(s0 + za, s0 + zb, 2 * self.stripe, self.stripe)[:, None]
        side = self.side[0] * (1 - stripe) + self.side[1] * stripe
        pal[:, 0] = side
        pal[:, K] = side
        pal[:, 1] = self.shoulder
        pal[:, K - 1] = self.shoulder
        patch = _coverage(s0 + za, s0 + zb, 37.0, 13.0)[:, None]
        road = self.asphalt * (1 - 0.07 * patch)
        pal[:, 3:K:2] = road[:, None, :]
        dash = _coverage(s0 + za, s0 + zb, *self.dash)
        for j in marks:
            solid = j in (2, K - 2)
            alpha = np.clip(p * (self.edge_w if solid else self.dash_w) / drawn[j], 0, 1) * (1.0 if solid else dash)
            colour = self.mark if (solid or not self.two_way) else self.centre_col
            pal[:, j] = road * (1 - alpha[:, None]) + colour * alpha[:, None]
        hz = self._hz(z)[:, None, None]
        pal = pal * (1 - hz) + self.haze * hz
        pal8 = pal.astype(np.uint8).reshape(R * (K + 1), 3)

        # each row is K+1 runs of constant colour: one np.repeat of the palette (as 3-byte items) fills it
        edges = np.empty((R, K + 2), np.intp)
        edges[:, 0], edges[:, 1:-1], edges[:, -1] = 0, bp, W
        runs = np.repeat(pal8.view("V3").ravel(), np.diff(edges, axis=1).ravel())
        out[yi:].view("V3")[..., 0] = runs.reshape(R, W)

    def _building(self, out, yh, s0, b, z1, z2, x1, x2):
        """A box beside the road: its facade toward the road (a perspective quad with rows of windows,
        built column-wise from row breakpoints and one cumulative sum) and its end wall toward the camera."""
        W, H, f, hc = self.W, self.H, self.f, self.hc
        c1, c2 = self.cx + f * x1 / z1, self.cx + f * x2 / z2
        h = b["h"]
        hz = float(self._hz(0.5 * (z1 + z2)))
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
                pal = (b["pal"] * (1 - hz) + self.haze * hz).astype(np.uint8)
                np.copyto(out[r0:r1, lo:hi].view("V3")[..., 0], np.take(pal.view("V3").ravel(), code),
                          where=code > 0)
        if b["s1"] - s0 >= _Z_NEAR:              # the end wall facing the camera
            ce = self.cx + f * (x1 + b["side"] * b["depth"]) / z1
            _fill(out, min(c1, ce), max(c1, ce), yh + f * (hc - h) / z1, yh + f * hc / z1,
                  self._mix(b["col"], hz))

    def _mix(self, c, h: float) -> np.ndarray:
        return (c * (1 - h) + self.haze * h).astype(np.uint8)

    def _things(self, i, out, yh, s0, road_x):
        """Roadside objects and vehicles, far to near, each projected once."""
        f = self.f
        items = []
        if len(self.obj_s):
            a, b = np.searchsorted(self.obj_s, [s0 + _Z_NEAR, s0 + _Z_FAR])
            z = self.obj_s[a:b] - s0
            x = road_x(z) + self.obj_u[a:b]
            for k in range(b - a):
                items.append((float(z[k]), float(x[k]), 0, a + k))
        if self.vehicles:
            zv = np.concatenate([self.veh_z[:, i], self.on_s0 - self.v_on * (i / self.fps) - s0])
            vis = np.flatnonzero((zv > _Z_NEAR + 1.5) & (zv < _Z_FAR))
            if len(vis):
                x = road_x(zv[vis]) + self.veh_u[vis]
                for k, j in enumerate(vis):
                    items.append((float(zv[j]), float(x[k]), 1, j))
        if not items:
            return
        items.sort(key=lambda it: -it[0])
        hz = self._hz(np.array([it[0] for it in items]))
        for (z, x, is_vehicle, k), h in zip(items, hz.tolist()):
            s = f / z
            cc, rb = self.cx + s * x, yh + self.hc * s
            if is_vehicle:
                self._draw_vehicle(i, out, self.vehicles[k], cc, rb, s, h)
            else:
                self._draw_object(out, self.objects[k], cc, rb, s, h)

    def _draw_object(self, out, obj, cc, rb, s, h):
        _, _, kind, params = obj
        mix = self._mix
        if kind == "post":
            _fill(out, cc - 0.06 * s, cc + 0.06 * s, rb - 1.0 * s, rb, mix(self.c_post, h))
            _fill(out, cc - 0.06 * s, cc + 0.06 * s, rb - 1.0 * s, rb - 0.82 * s, mix(self.c_dark, h))
            _fill(out, cc - 0.04 * s, cc + 0.04 * s, rb - 0.78 * s, rb - 0.7 * s, mix(self.c_reflector, h))
        elif kind == "lamp":
            side = params
            grey = mix(self.c_pole, h)
            _fill(out, cc - 0.09 * s, cc + 0.09 * s, rb - 8.0 * s, rb, grey)
            arm = cc - side * 1.6 * s
            _fill(out, min(cc, arm), max(cc, arm), rb - 8.0 * s, rb - 7.85 * s, grey)
            _fill(out, min(arm, arm + side * 0.5 * s), max(arm, arm + side * 0.5 * s), rb - 7.95 * s, rb - 7.75 * s,
                  mix(self.c_lamp, h))
        elif kind == "sign":
            panel_w, colour = params
            _fill(out, cc - 0.05 * s, cc + 0.05 * s, rb - 2.2 * s, rb, mix(self.c_pole, h))
            _fill(out, cc - panel_w / 2 * s, cc + panel_w / 2 * s, rb - 3.2 * s, rb - 2.1 * s, mix(colour, h))
            _fill(out, cc - panel_w / 2 * s * 0.8, cc + panel_w / 2 * s * 0.8, rb - 2.75 * s, rb - 2.6 * s,
                  mix(self.mark, h))
        else:  # tree
            ht, r, conifer, green = params
            trunk_h = ht * (0.25 if conifer else 0.4)
            _fill(out, cc - 0.15 * s, cc + 0.15 * s, rb - trunk_h * s - 1, rb, mix(self.c_trunk, h))
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
                _paint(region, np.abs(xx) <= half, mix(green * 0.8, h))
                _paint(region, (np.abs(xx + 0.25 * half) <= 0.5 * half) & (rr > top + 0.2 * (bot - top)), mix(green, h))
            else:
                cy, ry = 0.5 * (top + bot), 0.5 * (bot - top)
                e = (xx / max(rx, 0.5)) ** 2 + ((rr - cy) / max(ry, 0.5)) ** 2
                _paint(region, e <= 1, mix(green * 0.8, h))
                e2 = ((xx + 0.2 * rx) / max(rx * 0.7, 0.5)) ** 2 + ((rr - cy + 0.2 * ry) / max(ry * 0.7, 0.5)) ** 2
                _paint(region, e2 <= 1, mix(green * 1.1, h))

    def _draw_vehicle(self, i, out, v, cc, rb, s, h):
        w, ht, col = v["w"], v["h"], v["col"]
        hw = w / 2
        mix = self._mix

        def box(x0, x1, y0, y1, colour):
            _fill(out, cc + x0 * s, cc + x1 * s, rb - y1 * s, rb - y0 * s, mix(colour, h))

        dark = self.c_tyre
        _fill(out, cc - (hw + 0.08) * s, cc + (hw + 0.08) * s, rb - 0.25 * s, rb + max(1.0, 0.04 * s),
              mix(self.asphalt * 0.35, h))                                   # shadow
        box(-hw + 0.05, -hw + 0.35, 0.0, 0.5, dark)                          # wheels
        box(hw - 0.35, hw - 0.05, 0.0, 0.5, dark)
        if v["kind"] == "truck":
            box(-hw, hw, 0.45, ht, col)
            box(-hw, hw, 0.4, 0.6, col * 0.45)                               # bumper
            box(-0.02, 0.02, 0.7, ht - 0.1, col * 0.7)                       # door seam
            lamp = self.c_head if v["oncoming"] else self.c_brake if v["brake"][i] else self.c_tail
            box(-hw + 0.1, -hw + 0.35, 0.65, 0.85, lamp)
            box(hw - 0.35, hw - 0.1, 0.65, 0.85, lamp)
            return
        body_top = 0.95 if v["kind"] == "car" else ht * 0.55
        box(-hw, hw, 0.3, body_top, col)                                     # body
        box(-hw * 0.86, hw * 0.86, body_top, ht, col * 0.85)                 # cabin
        box(-hw * 0.76, hw * 0.76, body_top + 0.05, ht - 0.08,
            self.c_windscreen if v["oncoming"] else self.c_rear_window)      # window
        box(-hw, hw, 0.3, 0.45, col * 0.5)                                   # bumper
        box(-0.17, 0.17, 0.45, 0.58, self.c_plate)                           # plate
        if v["oncoming"]:
            lamp = self.c_head
        else:
            lamp = self.c_brake if v["brake"][i] else self.c_tail
        box(-hw + 0.05, -hw + 0.35, body_top - 0.25, body_top - 0.08, lamp)
        box(hw - 0.35, hw - 0.05, body_top - 0.25, body_top - 0.08, lamp)


# --------------------------------------------------------------------------------------------- public API

def render_frames(n_frames: int, fps: int, size: tuple[int, int], seed: int) -> Iterator[np.ndarray]:
    """Yield ``n_frames`` uint8 (H, W, 3) RGB frames of one synthetic drive; deterministic in ``seed``."""
    W, H = _check_size(size)
    fps = _check_fps(fps)
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    scene = _Scene(int(seed), int(n_frames), fps, W, H)     # arguments are checked here, not at first next()
    return (scene.frame(i) for i in range(int(n_frames)))


def _open_encoder(path: Path, fps: int, W: int, H: int):
    import av

    container = av.open(str(path), "w", format="mov", options={"movflags": "+faststart"})
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    stream.time_base = Fraction(1, fps)
    stream.codec_context.thread_count = 1
    # mbtree off: with it (and B-frames) this libx264 build gives slightly different bits from run to run
    stream.options = {"preset": PRESET, "crf": str(CRF), "threads": "1", "x264-params": "mbtree=0"}
    return container, stream


def render_clip(path: str | Path, seconds: float = 4.0, fps: int = 30, size: tuple[int, int] = (1280, 720),
                seed: int = 0) -> Path:
    """Render and encode one clip to ``path`` (H.264 in .mov, yuv420p), atomically: a temp file is
    written next to it and renamed, so ``path`` either is complete or does not exist."""
    import av

    W, H = _check_size(size)
    fps = _check_fps(fps)
    n = _n_frames(seconds, fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        container, stream = _open_encoder(tmp, fps, W, H)
        scene = _Scene(int(seed), n, fps, W, H)
        buf = np.empty((H, W, 3), np.uint8)          # reused: from_ndarray copies it
        with container:
            for k in range(n):
                rgb = scene.frame(k, buf)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", threads=1)
                frame.pts = k
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _is_complete(path: Path, n: int, fps: int, W: int, H: int) -> bool:
    """An existing file that decodes as the clip asked for (size, rate, frame count)."""
    import av

    try:
        with av.open(str(path)) as c:
            st = c.streams.video[0]
            return (st.codec_context.width, st.codec_context.height) == (W, H) \
                and st.average_rate == fps and st.frames == n
    except (av.FFmpegError, IndexError, OSError):
        return False


def _clip_ids(clips: int, val_fraction: float, seed: int) -> dict[str, list[str]]:
    """The clip ids of each split; train and val ids never collide, and growing ``clips`` only adds ids."""
    n_val = max(1, round(clips * val_fraction))
    return {"train": [f"synth-{seed:04d}-t{i:05d}" for i in range(clips)],
            "val": [f"synth-{seed:04d}-v{i:05d}" for i in range(n_val)]}


def _clip_seed(seed: int, split: str, i: int) -> int:
    state = np.random.SeedSequence([seed, {"train": 0, "val": 1}[split], i]).generate_state(1, np.uint64)
    return int(state[0])


def synth_dataset(out: str | Path, clips: int = 8, seconds: float = 4.0, fps: int = 30,
                  size: tuple[int, int] = (1280, 720), seed: int = 0, val_fraction: float = 0.25,
                  progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write a BDD100K-layout tree OUT/videos/train/<id>.mov and OUT/videos/val/<id>.mov (H.264 via PyAV, yuv420p).

    ``clips`` train clips; val gets ``max(1, round(clips * val_fraction))`` extra clips. Returns the paths of
    the whole set (train then val), whether written now or reused: a clip whose file already exists with
    the asked size, frame rate and frame count is skipped, any other file at its name is replaced.
    Clip ``i`` of a split depends only on (``seed``, split, ``i``), so reruns give the same tree.
    """
    W, H = _check_size(size)
    fps = _check_fps(fps)
    n = _n_frames(seconds, fps)
    if isinstance(clips, bool) or not isinstance(clips, (int, np.integer)) or clips < 1:
        raise ValueError(f"clips must be a positive integer, got {clips!r}")
    if not (0 <= val_fraction <= 1):
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(out)
    ids = _clip_ids(int(clips), val_fraction, int(seed))
    total = sum(len(v) for v in ids.values())
    paths: list[Path] = []
    done = 0
    for split, names in ids.items():
        for i, name in enumerate(names):
            path = out / "videos" / split / f"{name}.mov"
            done += 1
            if path.exists() and _is_complete(path, n, fps, W, H):
                if progress:
                    progress(f"[{done}/{total}] {split}/{path.name}: exists, skipped")
            else:
                render_clip(path, seconds, fps, (W, H), _clip_seed(int(seed), split, i))
                if progress:
                    progress(f"[{done}/{total}] {split}/{path.name}: wrote {n} frames {W}x{H} @ {fps} fps")
            paths.append(path)
    return paths
