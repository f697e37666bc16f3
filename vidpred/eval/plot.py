"""metrics.png: PSNR and SSIM per future step, model against copy-last-frame, drawn with matplotlib.

matplotlib picks round tick values, formats them and draws the legend; the figure is made with
``matplotlib.figure.Figure`` and rendered by the Agg canvas, so nothing needs a display and no pyplot
global state is touched (safe in a Ray worker or a test). :func:`new_figure` and :func:`png_bytes` are the
figure setup every vidpred plot shares (``vidpred tune``'s objective.png uses them too).
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

COLOURS = {"model": "#346eeb", "copy_last": "#eb8c14"}
LABELS = {"model": "model", "copy_last": "copy last frame"}
DPI = 100
PANEL_INCHES = (4.2, 3.2)  # one panel's width and height


def new_figure(cols: int, rows: int = 1) -> tuple[Figure, list]:
    """A white figure of ``cols`` × ``rows`` panels of :data:`PANEL_INCHES`; returns it and its axes, flat."""
    fig = Figure(figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg canvas: no display needed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def metrics_plot(summary: dict[str, dict]) -> bytes:
    """``summary`` as :func:`vidpred.model.metrics.summarize` returns it -> PNG of PSNR and SSIM panels side
    by side: one line with dots per method, x = future step 1..F (integer ticks), a shared legend."""
    fig, axes = new_figure(2)
    for ax, (metric, title, unit) in zip(axes, (("psnr", "PSNR per future step", "PSNR (dB)"),
                                                ("ssim", "SSIM per future step", "SSIM"))):
        for who in COLOURS:
            if who not in summary:
                continue
            values = summary[who][metric]["per_step"]
            ax.plot(range(1, len(values) + 1), values, marker="o", color=COLOURS[who], label=LABELS[who])
        ax.set_title(title)
        ax.set_xlabel("future step")
        ax.set_ylabel(unit)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    return png_bytes(fig)
