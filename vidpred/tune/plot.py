"""objective.png: the objective against each searched weight, one scatter panel per weight (log axis for a
log-uniform weight), the best trial circled in red, trials ASHA stopped early hollow; matplotlib, with the
figure setup of vidpred eval's plot (:func:`vidpred.eval.plot.new_figure`)."""

from __future__ import annotations

import math

from vidpred.eval.plot import new_figure, png_bytes

DOT, BEST = "#346eeb", "#dc2828"


def objective_plot(rows: list[dict], weights: dict[str, bool], metric: str) -> bytes:
    """PNG. ``rows``: one dict per trial (weights and ``metric``), best first; ``weights``: name → log axis."""
    scored = [r for r in rows if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    cols = 2 if len(weights) > 1 else 1
    fig, axes = new_figure(cols, max(math.ceil(len(weights) / cols), 1))
    for ax in axes[len(weights):]:
        ax.set_visible(False)
    for ax, (name, log_x) in zip(axes, weights.items()):
        points = [(float(r[name]), float(r[metric]), r.get("status") != "stopped")
                  for r in scored if r.get(name) is not None and (not log_x or float(r[name]) > 0)]
        ax.set_title(f"{metric} vs {name} ({len(points)} trials)")
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        if log_x:
            ax.set_xscale("log")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(True, alpha=0.3)
        if not points:
            ax.text(0.5, 0.5, "no trial reported it", ha="center", va="center", transform=ax.transAxes)
            continue
        for full, label, face in ((True, "ran the full budget", DOT), (False, "stopped early", "none")):
            chosen = [(x, y) for x, y, f in points if f is full]
            if chosen:
                ax.scatter(*zip(*chosen), s=28, facecolors=face, edgecolors=DOT, label=label)
        best = scored[0] if scored else None
        if best is not None and best.get(name) is not None:
            ax.scatter([float(best[name])], [float(best[metric])], s=110, facecolors="none", edgecolors=BEST,
                       linewidths=2, label="best")
    handles = {}
    for ax in axes:  # one legend for the figure, under the panels, where it covers no point
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=len(handles),
                   fontsize="small")
    return png_bytes(fig)
