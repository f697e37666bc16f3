"""Frames → overlapping windows of ``length`` frames, a new window every ``stride`` frames."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np


def windows(frames: Iterable[np.ndarray], length: int, stride: int) -> Iterator[np.ndarray]:
    """Yield (length, H, W, 3) stacks; streaming, holds at most ``length`` frames."""
    buf: deque[np.ndarray] = deque(maxlen=length)
    for i, frame in enumerate(frames):
        buf.append(frame)
        start = i - length + 1
        if start >= 0 and start % stride == 0:
            yield np.stack(buf)
