"""Pictures of predictions: a PNG grid with a row of truth and a row of prediction."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

GAP = 4
LABEL_W = 72


def grid(context: np.ndarray, truth: np.ndarray, pred: np.ndarray, scale: int = 2) -> Image.Image:
    """Two rows of uint8 (T, H, W, 3) frames: ``context | truth`` above ``context | prediction``.

    The future columns sit right of a wider gap so the context/future boundary is visible.
    """
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ")
    n_ctx, n_fut = len(context), len(truth)
    h, w = context.shape[1] * scale, context.shape[2] * scale
    width = LABEL_W + (n_ctx + n_fut) * (w + GAP) + 3 * GAP
    height = 2 * (h + GAP) + GAP
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    for row, (label, future) in enumerate((("truth", truth), ("predicted", pred))):
        y = GAP + row * (h + GAP)
        draw.text((4, y + h // 2 - 5), label, fill=(230, 230, 230))
        for col, frame in enumerate([*context, *future]):
            x = LABEL_W + col * (w + GAP) + (3 * GAP if col >= n_ctx else 0)
            tile = Image.fromarray(np.asarray(frame, dtype=np.uint8)).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (x, y))
    return canvas
