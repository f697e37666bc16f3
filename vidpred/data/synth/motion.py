"""The smooth random processes of a drive: the camera (focal length, height, horizon with pitch), the ego
car's speed and distance along the road, and the road's curve (heading and lateral offset at any arc
length). Each draws from the generator it is given, in a fixed order."""

from __future__ import annotations

import numpy as np

Z_NEAR = 1.5       # metres: nothing nearer than this is drawn
Z_FAR = 400.0      # metres: objects beyond are lost in the haze


def sines(t: np.ndarray, freq: np.ndarray, amp: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """sum_j amp_j sin(2 pi freq_j t + phase_j) at each time in ``t``."""
    return (amp[:, None] * np.sin(2 * np.pi * freq[:, None] * t[None, :] + phase[:, None])).sum(0)


def smooth(rng: np.random.Generator, t: np.ndarray, terms: int, fmin: float, fmax: float) -> np.ndarray:
    """A smooth random process in [-1, 1]: a few sinusoids with random frequencies and phases."""
    freq = rng.uniform(fmin, fmax, terms)
    phase = rng.uniform(0, 2 * np.pi, terms)
    amp = rng.uniform(0.4, 1.0, terms)
    amp /= amp.sum()
    return sines(t, freq, amp, phase)


def camera(rng: np.random.Generator, t: np.ndarray, W: int, H: int):
    """Focal length and principal column (px), height above the road (m), horizon row per frame (px)."""
    f = W * rng.uniform(0.78, 0.95)
    cx = W / 2 + W * rng.uniform(-0.015, 0.015)
    hc = rng.uniform(1.2, 1.6)
    yh0 = H * rng.uniform(0.40, 0.47)
    pitch = H * (0.004 * smooth(rng, t, 2, 0.05, 0.3) + 0.0015 * smooth(rng, t, 3, 1.5, 6.0))
    return f, cx, hc, yh0 + pitch


def ego_motion(rng: np.random.Generator, t: np.ndarray, fps: int) -> tuple[np.ndarray, np.ndarray]:
    """Speed (m/s) and distance along the road (m) per frame."""
    v0 = rng.uniform(5.0, 33.0)
    freq = rng.uniform(0.03, 0.3, 3)                 # speed wanders, at most ~2.5 m/s² in all
    amp = rng.uniform(0.3, 1.0, 3) * 2.5 / (2 * np.pi * freq * 3)
    phase = rng.uniform(0, 2 * np.pi, 3)
    v = np.clip(v0 + sines(t, freq, amp, phase), 0.5, None)
    s = rng.uniform(0, 5000) + np.concatenate([[0.0], np.cumsum(v[:-1]) / fps])
    return v, s


class Curve:
    """Road curvature kappa(s) = A * sum b_j sin(2 pi s / lam_j + phi_j), integrated analytically."""

    def __init__(self, rng: np.random.Generator):
        A = 0.0 if rng.random() < 0.12 else 1.0 / rng.uniform(140, 1200)
        lam = rng.uniform(150, 900, 3)
        b = rng.uniform(0.3, 1.0, 3)
        b /= b.sum()
        self.w = 2 * np.pi / lam
        self.phi = rng.uniform(0, 2 * np.pi, 3)
        self.a1 = -A * b / self.w            # K1(s) = sum a1 cos(w s + phi)   (road heading)
        self.a2 = -A * b / self.w ** 2       # K2(s) = sum a2 sin(w s + phi)   (lateral offset)

    def _sum(self, s, a: np.ndarray, wave) -> np.ndarray:
        s = np.asarray(s, np.float64)
        arg = self.w[:, None] * s.ravel()[None, :] + self.phi[:, None]
        return (a[:, None] * wave(arg)).sum(0).reshape(s.shape)

    def heading(self, s) -> np.ndarray:
        """Road heading (rad) at arc length s: the integral of the curvature."""
        return self._sum(s, self.a1, np.cos)

    def offset(self, s) -> np.ndarray:
        """Lateral offset (m, small angles) at arc length s: the integral of the heading."""
        return self._sum(s, self.a2, np.sin)
