"""A PNG plot of PSNR and SSIM per future step, model against copy-last-frame, drawn with PIL alone
(no plotting library to install for two small line charts)."""

from __future__ import annotations

from PIL import Image, ImageDraw

COLOURS = {"model": (52, 110, 235), "copy_last": (235, 140, 20)}
LABELS = {"model": "model", "copy_last": "copy last frame"}
PANEL_W, PANEL_H, MARGIN = 380, 280, 48


def _nice_range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.15, abs(hi) * 0.01, 1e-3)
    return lo - pad, hi + pad


def _panel(draw: ImageDraw.ImageDraw, left: int, title: str, series: dict[str, list[float]]) -> None:
    """One chart: axes, ticks, one polyline with dots per series; x = future step 1..F."""
    x0, y0, x1, y1 = left + MARGIN, 34, left + PANEL_W - 12, PANEL_H - 36
    lo, hi = _nice_range([v for vs in series.values() for v in vs])
    steps = len(next(iter(series.values())))

    def xy(i: int, v: float) -> tuple[float, float]:
        x = x0 + (x1 - x0) * (i / max(steps - 1, 1) if steps > 1 else 0.5)
        return x, y1 - (y1 - y0) * (v - lo) / (hi - lo)

    draw.text((left + MARGIN, 8), title, fill=(0, 0, 0))
    draw.rectangle([x0, y0, x1, y1], outline=(120, 120, 120))
    for k in range(5):  # y ticks
        v = lo + (hi - lo) * k / 4
        y = xy(0, v)[1]
        draw.line([x0 - 4, y, x0, y], fill=(120, 120, 120))
        draw.text((left + 4, y - 6), f"{v:.3g}", fill=(60, 60, 60))
    for i in range(steps):  # x ticks
        x = xy(i, lo)[0]
        draw.line([x, y1, x, y1 + 4], fill=(120, 120, 120))
        draw.text((x - 3, y1 + 6), str(i + 1), fill=(60, 60, 60))
    draw.text(((x0 + x1) // 2 - 30, y1 + 20), "future step", fill=(60, 60, 60))
    for name, values in series.items():
        points = [xy(i, v) for i, v in enumerate(values)]
        if len(points) > 1:
            draw.line(points, fill=COLOURS[name], width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=COLOURS[name])


def metrics_plot(summary: dict[str, dict]) -> Image.Image:
    """``summary`` as :func:`vidpred.model.metrics.summarize` returns it -> PSNR and SSIM panels side by side."""
    image = Image.new("RGB", (2 * PANEL_W, PANEL_H + 24), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for col, (metric, title) in enumerate((("psnr", "PSNR (dB) per future step"), ("ssim", "SSIM per future step"))):
        series = {who: summary[who][metric]["per_step"] for who in COLOURS if who in summary}
        _panel(draw, col * PANEL_W, title, series)
    x = MARGIN
    for who in COLOURS:  # legend along the bottom
        draw.rectangle([x, PANEL_H + 6, x + 14, PANEL_H + 16], fill=COLOURS[who])
        draw.text((x + 20, PANEL_H + 5), LABELS[who], fill=(0, 0, 0))
        x += 160
    return image
