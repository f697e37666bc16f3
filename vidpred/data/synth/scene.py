"""One clip's scene: every random choice made up front, and ``frame(i)`` composing frame i from the parts
(sky, ground, buildings, roadside objects and vehicles far to near, the hood)."""

from __future__ import annotations

import math

import numpy as np

from .buildings import draw_buildings, make_buildings
from .motion import Z_FAR, Z_NEAR, Curve, camera, ego_motion, smooth
from .paint import jitter, rgb
from .road import draw_ground, lane_edges
from .roadside import draw_object, make_objects
from .sky import SKIES, draw_sky, make_sky
from .vehicles import draw_hood, draw_vehicle, make_hood, make_traffic


class _Scene:
    """All random choices of one clip, made up front; ``frame(i)`` draws frame i."""

    def __init__(self, seed: int, n: int, fps: int, W: int, H: int):
        # independent streams per part, so that e.g. the size (which changes how many random numbers the
        # sky needs) or the length (how many roadside objects) does not reshuffle everything else
        rng, rng_sky, rng_obj, rng_bld, rng_traffic = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))
        self.W, self.H, self.n, self.fps = W, H, n, fps
        t = np.arange(n) / fps

        self.f, self.cx, self.hc, self.yh = camera(rng, t, W, H)
        self.v, self.s = ego_motion(rng, t, fps)
        self.curve = Curve(rng)

        # ---- road: kind, lanes, markings, the ego car's lane and its drift within it
        self.kind = rng.choice(["rural", "highway", "urban"], p=[0.4, 0.35, 0.25])
        L = int(rng.choice([2, 3, 4], p=[0.45, 0.35, 0.2]))
        self.two_way = L == 2
        self.L = L
        self.lw = rng.uniform(3.2, 3.8)
        self.Wr = L * self.lw / 2
        self.sh = rng.uniform(0.4, 1.2) if self.kind == "urban" else rng.uniform(0.6, 2.5)
        ego_lane = 1 if self.two_way else int(rng.integers(L))
        self.ego_lane = ego_lane
        self.u_ego = -self.Wr + (ego_lane + 0.5) * self.lw + 0.3 * smooth(rng, t, 2, 0.04, 0.25)
        if self.two_way:
            self.dash = (rng.uniform(9, 14), rng.uniform(3, 4.5))
            self.centre_col = rgb(222, 180, 40) if rng.random() < 0.5 else rgb(225, 225, 220)
        else:
            self.dash = (rng.uniform(9, 15), rng.uniform(2.5, 3.5))
            self.centre_col = rgb(225, 225, 220)
        self.edge_w, self.dash_w = rng.uniform(0.12, 0.2), rng.uniform(0.1, 0.16)
        self.bp_m, self.marks = lane_edges(self)

        # ---- light and palette
        weather = rng.choice(list(SKIES), p=[0.55, 0.3, 0.15])
        zen, hor, light = SKIES[weather]
        self.zen, self.hor = jitter(rng, zen, 10), jitter(rng, hor, 10)
        self.light = light * rng.uniform(0.9, 1.08)
        self.haze = (self.hor * 0.85 + 0.15 * rgb(170, 170, 170)).astype(np.float32)
        self.fog = rng.uniform(180, 900) if weather != "overcast" else rng.uniform(120, 450)
        lit = self.lit
        asphalt = rng.uniform(62, 100)
        self.asphalt = lit(rgb(asphalt, asphalt, asphalt * 1.04))
        self.mark = lit(rgb(225, 225, 220))
        self.centre_col = lit(self.centre_col)
        if self.kind == "urban":
            p = rng.uniform(120, 160)
            self.side = (lit(rgb(p, p * 0.98, p * 0.94)), lit(rgb(p * 0.93, p * 0.91, p * 0.87)))
            self.shoulder = lit(rgb(165, 163, 158))
        else:
            if rng.random() < 0.25:   # dry grass
                g = (rgb(150, 138, 78), rgb(162, 150, 90))
            else:
                g = (rgb(66, 112, 42), rgb(80, 128, 52))
            self.side = (lit(jitter(rng, g[0], 8)), lit(jitter(rng, g[1], 8)))
            self.shoulder = lit(jitter(rng, rgb(122, 116, 104), 10))
        self.stripe = rng.uniform(8, 25)
        night = self.light < 0.75
        self.c_post, self.c_dark = lit(rgb(230, 230, 225)), lit(rgb(30, 30, 30))
        self.c_reflector, self.c_pole = rgb(235, 120, 30), lit(rgb(120, 122, 128))
        self.c_trunk = lit(rgb(88, 64, 40))
        self.c_lamp = rgb(255, 235, 170) if night else lit(rgb(200, 200, 190))
        self.c_tyre, self.c_plate = lit(rgb(22, 22, 24)), lit(rgb(225, 225, 215))
        self.c_windscreen, self.c_rear_window = lit(rgb(140, 160, 180)), lit(rgb(40, 48, 58))
        self.c_brake, self.c_tail = rgb(255, 40, 30), lit(rgb(160, 28, 24))
        self.c_head = rgb(255, 250, 225) if self.light < 0.8 else lit(rgb(235, 235, 225))

        # ---- the parts, each from its own stream but the hood and whether there are buildings
        self.pano, self.pano_off = make_sky(self, rng_sky, weather)
        self.hood = make_hood(self, rng)
        s_lo, s_hi = self.s[0] - 10, self.s[-1] + Z_FAR
        self.objects = make_objects(self, rng_obj, s_lo, s_hi)
        self.obj_s = np.array([o[0] for o in self.objects], np.float64)
        self.obj_u = np.array([o[1] for o in self.objects], np.float64)
        has_buildings = self.kind == "urban" or rng.random() < 0.2
        self.buildings = make_buildings(self, rng_bld, s_lo, s_hi) if has_buildings else []
        self.bld_s1 = np.array([b["s1"] for b in self.buildings])
        self.bld_s2 = np.array([b["s2"] for b in self.buildings])
        self.bld_u = np.array([b["side"] * b["off"] for b in self.buildings])
        self.vehicles, self.v_on = make_traffic(self, rng_traffic, t, fps)
        same = [v for v in self.vehicles if not v["oncoming"]]
        self.veh_z = np.array([v["z"] for v in same]).reshape(len(same), n)
        self.on_s0 = np.array([v["z"] for v in self.vehicles if v["oncoming"]], np.float64)
        self.veh_u = np.array([v["u"] for v in self.vehicles])

    # ----- light
    def lit(self, c: np.ndarray) -> np.ndarray:
        """A surface colour under this clip's light."""
        return np.clip(c * self.light, 0, 255).astype(np.float32)

    def hz(self, z):
        """How much of the haze colour is seen at distance z (m)."""
        return 1.0 - np.exp(-np.asarray(z) / self.fog)

    def mix(self, c, h) -> np.ndarray:
        """Colour(s) ``c`` seen through haze ``h``, as uint8."""
        return (c * (1 - h) + self.haze * h).astype(np.uint8)

    # ----- drawing
    def frame(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Draw frame i into ``out`` (a new uint8 (H, W, 3) array if None) and return it."""
        W, H = self.W, self.H
        yh = float(self.yh[i])
        yi = min(max(int(math.ceil(yh)), 1), H - 1)
        if out is None:
            out = np.empty((H, W, 3), np.uint8)
        draw_sky(self, out, i, yi)
        s0 = float(self.s[i])
        k1, k2, u_ego = float(self.curve.heading(s0)), float(self.curve.offset(s0)), float(self.u_ego[i])

        def road_x(z):   # camera-frame lateral position (m) of the road centre at forward distance z
            return self.curve.offset(s0 + z) - k2 - z * k1 - u_ego

        draw_ground(self, i, out, yi, yh, road_x)
        draw_buildings(self, out, yh, s0, road_x)
        self._things(i, out, yh, s0, road_x)
        if self.hood is not None:
            draw_hood(out, self.hood)
        return out

    def _things(self, i, out, yh, s0, road_x):
        """Roadside objects and vehicles, far to near, each projected once."""
        f = self.f
        items = []
        if len(self.obj_s):
            a, b = np.searchsorted(self.obj_s, [s0 + Z_NEAR, s0 + Z_FAR])
            z = self.obj_s[a:b] - s0
            x = road_x(z) + self.obj_u[a:b]
            for k in range(b - a):
                items.append((float(z[k]), float(x[k]), 0, a + k))
        if self.vehicles:
            zv = np.concatenate([self.veh_z[:, i], self.on_s0 - self.v_on * (i / self.fps) - s0])
            vis = np.flatnonzero((zv > Z_NEAR + 1.5) & (zv < Z_FAR))
            if len(vis):
                x = road_x(zv[vis]) + self.veh_u[vis]
                for k, j in enumerate(vis):
                    items.append((float(zv[j]), float(x[k]), 1, j))
        if not items:
            return
        items.sort(key=lambda it: -it[0])
        hz = self.hz(np.array([it[0] for it in items]))
        for (z, x, is_vehicle, k), h in zip(items, hz.tolist()):
            s = f / z
            cc, rb = self.cx + s * x, yh + self.hc * s
            if is_vehicle:
                draw_vehicle(self, i, out, self.vehicles[k], cc, rb, s, h)
            else:
                draw_object(self, out, self.objects[k], cc, rb, s, h)
