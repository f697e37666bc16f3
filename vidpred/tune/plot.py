"""objective.png: the objective against each searched weight, one scatter panel per weight (log axis for a
log-uniform weight), the best trial circled in red, trials ASHA stopped early hollow. PIL only, like
vidpred eval's plot."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from vidpred.eval.plot import MARGIN, PANEL_H, PANEL_W, _nice_range

DOT, BEST = (52, 110, 235), (220, 40, 40)


def _panel(draw: ImageDraw.ImageDraw, left: int, top: int, title: str, points: list[tuple[float, float, bool]],
           best: tuple[float, float] | None, log_x: bool, y_label: str) -> None:
    """``points``: (weight, objective, ran the full budget)."""
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs, ys = [fx(x) for x, _, _ in points], [y for _, y, _ in points]
    (xlo, xhi), (ylo, yhi) = _nice_range(xs), _nice_range(ys)
    x0, y0, x1, y1 = left + MARGIN, top + 34, left + PANEL_W - 12, top + PANEL_H - 36

    def xy(x: float, y: float) -> tuple[float, float]:
        return x0 + (x1 - x0) * (fx(x) - xlo) / (xhi - xlo), y1 - (y1 - y0) * (y - ylo) / (yhi - ylo)

    draw.text((x0, top + 8), title, fill=(0, 0, 0))
    draw.rectangle([x0, y0, x1, y1], outline=(120, 120, 120))
    for k in range(5):
        y = y1 - (y1 - y0) * k / 4
        draw.line([x0 - 4, y, x0, y], fill=(120, 120, 120))
        draw.text((left + 4, y - 6), f"{ylo + (yhi - ylo) * k / 4:.3g}", fill=(60, 60, 60))
        x = x0 + (x1 - x0) * k / 4
        v = xlo + (xhi - xlo) * k / 4
        draw.line([x, y1, x, y1 + 4], fill=(120, 120, 120))
        draw.text((x - 14, y1 + 6), f"{10 ** v if log_x else v:.2g}", fill=(60, 60, 60))
    draw.text(((x0 + x1) // 2 - 40, y1 + 20), y_label + (" (log x)" if log_x else ""), fill=(60, 60, 60))
    for px, py, full in points:
        x, y = xy(px, py)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=DOT if full else None, outline=DOT)
    if best is not None:
        x, y = xy(*best)
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], outline=BEST, width=2)


def objective_plot(rows: list[dict], weights: dict[str, bool], metric: str) -> Image.Image:
    """``rows``: one dict per trial (weights and ``metric``), best first; ``weights``: name → log axis."""
    scored = [r for r in rows if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    cols = 2 if len(weights) > 1 else 1
    nrows = max(math.ceil(len(weights) / cols), 1)
    image = Image.new("RGB", (cols * PANEL_W, nrows * PANEL_H), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for i, (name, log_x) in enumerate(weights.items()):
        points = [(float(r[name]), float(r[metric]), r.get("status") != "stopped")
                  for r in scored if r.get(name) is not None]
        if log_x:
            points = [p for p in points if p[0] > 0]
        if not points:
            continue
        best = (float(scored[0][name]), float(scored[0][metric])) if scored[0].get(name) is not None else None
        _panel(draw, (i % cols) * PANEL_W, (i // cols) * PANEL_H, f"{metric} vs {name} ({len(points)} trials)",
               points, best, log_x, name)
    return image
