"""Pictures of predictions: PNG grids (a row of truth above a row of prediction per clip) and GIFs."""

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


def stack(images: list[Image.Image]) -> Image.Image:
    """Images one below the other, left-aligned, on the grid's background."""
    width = max(im.width for im in images)
    canvas = Image.new("RGB", (width, sum(im.height for im in images)), (24, 24, 24))
    y = 0
    for im in images:
        canvas.paste(im, (0, y))
        y += im.height
    return canvas


PANELS = ("truth", "model", "copy-last")  # the GIF's columns


def gif_frames(context: np.ndarray, truth: np.ndarray, pred: np.ndarray, scale: int = 2) -> list[Image.Image]:
    """One picture per time step of a batch of clips ([N, T, H, W, 3] uint8 each, T = C or F):
    ``truth | model | copy-last`` side by side, a row per clip. In the context steps every panel shows the
    observed frame under a green bar; in the future steps the model's panel shows its prediction and the
    copy-last panel the last context frame, under a red bar."""
    n, n_ctx, n_fut = len(context), context.shape[1], truth.shape[1]
    h, w = context.shape[2] * scale, context.shape[3] * scale
    bar = 12
    frames = []
    for t in range(n_ctx + n_fut):
        observed = t < n_ctx
        canvas = Image.new("RGB", (len(PANELS) * (w + GAP) + GAP, n * (h + bar + GAP) + GAP), (24, 24, 24))
        draw = ImageDraw.Draw(canvas)
        for i in range(n):
            y = GAP + i * (h + bar + GAP)
            if observed:
                shown = (context[i, t],) * len(PANELS)
            else:
                shown = (truth[i, t - n_ctx], pred[i, t - n_ctx], context[i, -1])
            for col, (frame, label) in enumerate(zip(shown, PANELS)):
                x = GAP + col * (w + GAP)
                colour = (40, 160, 60) if observed or col == 0 else (200, 50, 50)
                draw.rectangle([x, y, x + w - 1, y + bar - 1], fill=colour)
                step = f"t={t + 1 - n_ctx}" if not observed else f"ctx {t + 1}/{n_ctx}"
                draw.text((x + 2, y), f"{label} {step}", fill=(255, 255, 255))
                canvas.paste(Image.fromarray(frame).resize((w, h), Image.NEAREST), (x, y + bar))
        frames.append(canvas)
    return frames


def save_gif(frames: list[Image.Image], path, fps: float) -> None:
    """An endlessly looping GIF; the last frame is held a second so the final prediction can be read."""
    durations = [round(1000 / fps)] * (len(frames) - 1) + [1000]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False)
