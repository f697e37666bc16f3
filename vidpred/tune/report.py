"""What a finished experiment hands back, in ``<storage>/<name>/report/`` (local or s3://):

* ``results.csv`` (every column) and ``results.md`` (the main ones): one row per trial, best first;
* ``best.yaml``: the best trial's training config, which ``vidpred train --config`` takes unchanged (with a
  PBT schedule as ``loss.schedule``);
* ``schedules.json``: every trial's weight schedule; ``objective.png``: the objective against each weight;
* ``summary.json``: the best trial, its objective, weights, schedule and checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from vidpred import config as config_mod
from vidpred.storage import join, write_bytes
from vidpred.tune.experiment import DERIVED_METRICS, LOSS_METRICS, VAL_METRICS, Experiment
from vidpred.tune.plot import objective_plot

TABLE_METRICS = ("val_psnr", "val_ssim", "val_psnr_gain", "val_ssim_gain", "val_sharpness")


@dataclass
class Report:
    out: str
    files: dict[str, str]
    best: dict[str, Any] | None

    def describe(self) -> str:
        if self.best is None:
            return f"no trial reported a result; report in {self.out}"
        b = self.best
        return (f"best trial {b['trial_id']}: {b['objective']}={b['value']:.4f} at step {b['step']}\n"
                f"[vidpred] best config: {self.files['best.yaml']}  (vidpred train --config it)\n"
                f"[vidpred] best checkpoint: {b['checkpoint_path']}\n"
                f"[vidpred] table: {self.files['results.md']}, plot: {self.files['objective.png']}")


def trial_rows(grid, exp: Experiment, total_steps: int) -> list[dict[str, Any]]:
    """One dict per trial from its last result, sorted by the objective (trials without one last)."""
    rows = []
    for result in grid:
        m = dict(result.metrics or {})
        config = result.config or {}  # None for a trial created but not started when the driver was stopped
        row = {"trial_id": m.get("trial_id") or result.path.rstrip("/").rsplit("/", 1)[-1],
               "status": "error" if result.error else "done" if m.get("step", 0) >= total_steps else "stopped",
               "step": m.get("step", 0)}
        row.update({k: m.get(k, config.get(k)) for k in exp.space})
        row.update({k: m[k] for k in (*DERIVED_METRICS, *VAL_METRICS, *LOSS_METRICS) if k in m})
        row["schedule"] = m.get("schedule") or json.dumps([{"step": 0, **config}])
        row["checkpoint_path"] = m.get("checkpoint_path", "")
        rows.append(row)
    metric, sign = exp.objective.metric, (-1 if exp.objective.mode == "max" else 1)

    def key(row):
        v = row.get(metric)
        return (0, sign * v) if isinstance(v, (int, float)) and math.isfinite(v) else (1, 0)

    return sorted(rows, key=key)


def _columns(rows: list[dict[str, Any]], exp: Experiment) -> list[str]:
    first = ["rank", "trial_id", exp.objective.metric, "status", "step", *exp.space]
    rest = [k for k in (*DERIVED_METRICS, *VAL_METRICS, *LOSS_METRICS) if any(k in r for r in rows)]
    return [*first, *[k for k in rest if k not in first], "checkpoint_path", "schedule"]


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def csv_text(rows: list[dict[str, Any]], exp: Experiment) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows, exp), extrasaction="ignore")
    writer.writeheader()
    writer.writerows({"rank": i + 1, **r} for i, r in enumerate(rows))
    return buf.getvalue()


def markdown_table(rows: list[dict[str, Any]], exp: Experiment) -> str:
    metric = exp.objective.metric
    cols = ["rank", "trial_id", metric, "status", "step", *exp.space, *[m for m in TABLE_METRICS if m != metric]]
    lines = [f"# {exp.name}: {len(rows)} trials, sorted by {metric} ({exp.objective.mode})", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt({"rank": i + 1, **r}.get(c, "")) for c in cols) + " |" for i, r in enumerate(rows)]
    return "\n".join(lines) + "\n"


def best_config(exp: Experiment, row: dict[str, Any]) -> dict[str, Any]:
    """The best trial's training config as ``vidpred train --config`` takes it: the experiment's base, the
    trial's (first) weights and, when they changed during training, ``loss.schedule``."""
    schedule = json.loads(row["schedule"])
    raw = exp.trial_raw({k: v for k, v in schedule[0].items() if k != "step"})
    for key in ("name", "init_from"):
        raw["train"].pop(key, None)
    if len(schedule) > 1:
        raw["loss"]["schedule"] = schedule
    config_mod.validate(raw)  # what vidpred train will do with it
    return raw


def write_report(run, out: str | None = None) -> Report:
    """Write every output for a finished (or interrupted) ``run`` (a :class:`vidpred.tune.run.TuneRun`)."""
    exp, data_cfg = run.exp, run.cfg.data
    out = out or join(run.path, "report")
    rows = trial_rows(run.grid, exp, run.cfg.train.steps)
    metric = exp.objective.metric
    files: dict[str, bytes] = {"results.csv": csv_text(rows, exp).encode(),
                               "results.md": markdown_table(rows, exp).encode(),
                               "schedules.json": json.dumps({r["trial_id"]: json.loads(r["schedule"]) for r in rows},
                                                            indent=1).encode()}
    best = rows[0] if rows and isinstance(rows[0].get(metric), (int, float)) else None
    summary = None
    if best is not None:
        header = (f"# vidpred tune {exp.name}: best of {len(rows)} trials, trial {best['trial_id']}, "
                  f"{metric}={best[metric]:.4f} at step {best['step']}\n# vidpred train --config THIS_FILE\n")
        files["best.yaml"] = (header + yaml.safe_dump(best_config(exp, best), sort_keys=False)).encode()
        summary = {"trial_id": best["trial_id"], "objective": metric, "mode": exp.objective.mode,
                   "value": best[metric], "step": best["step"], "weights": {k: best[k] for k in exp.space},
                   "schedule": json.loads(best["schedule"]), "checkpoint_path": best["checkpoint_path"]}
        files["summary.json"] = json.dumps(summary, indent=1).encode()
    searched = {k: d.dist == "loguniform" for k, d in exp.space.items() if d.searched}
    files["objective.png"] = objective_plot(rows, searched, metric)
    paths = {}
    for name, data in files.items():
        paths[name] = join(out, name)
        write_bytes(paths[name], data, data_cfg)
    return Report(out=out, files=paths, best=summary)
