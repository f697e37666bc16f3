"""One trial: a Tune function trainable that builds its own TorchTrainer (Ray Train V2) with
:func:`vidpred.train.launch.trainer_for`, DeepSpeed and all, as ``vidpred train`` does.

* ASHA / FIFO: one ``fit()`` over ``train.steps``; :class:`ValidationReporter` sends each validation to Tune.
  The Train run is named after the trial, so a trial restarted by ``Tuner.restore`` resumes its own
  checkpoints (Ray Train does that for a run of the same name).
* PBT: one ``fit()`` per perturbation interval, each starting from the previous interval's checkpoint
  (``train.init_from``), then one Tune result with a small Tune checkpoint: :class:`TrialState`, which points
  at the Train checkpoint and holds the weight schedule so far. When PBT makes a trial copy a better one,
  Tune hands it the donor's state: it continues from the donor's checkpoint and inherits its schedule.
  (Ray Train checkpoints are not Tune checkpoints, so PBT over one long fit could never clone.)
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from vidpred.storage import as_uri, join
from vidpred.train.launch import trainer_for
from vidpred.train.plan import resolve_auto
from vidpred.tune.experiment import Experiment
from vidpred.tune.objective import ValidationReporter, derived

STATE_FILE = "trial_state.json"
PBT_CLOCK = "pbt_clock"


@dataclass
class TrialState:
    step: int = 0                    # optimizer steps done
    checkpoint: str | None = None    # the Train checkpoint to continue from (local path or s3:// URI)
    schedule: list[dict[str, Any]] = field(default_factory=list)  # [{"step": s, "w_rec": ..., ...}, ...]

    @classmethod
    def of(cls, checkpoint: tune.Checkpoint | None) -> "TrialState":
        if checkpoint is None:
            return cls()
        with checkpoint.as_directory() as directory:
            return cls(**json.loads((Path(directory) / STATE_FILE).read_text()))

    def report(self, metrics: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="vidpred-trial-") as directory:
            (Path(directory) / STATE_FILE).write_text(json.dumps(asdict(self)))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def extend(schedule: list[dict[str, Any]], step: int, weights: dict[str, float]) -> list[dict[str, Any]]:
    """The schedule with ``weights`` in force from ``step`` on (phases from ``step`` on replaced; a phase equal
    to the one in force is not added)."""
    kept = [phase for phase in schedule if phase["step"] < step]
    if kept and {k: v for k, v in kept[-1].items() if k != "step"} == weights:
        return kept
    return [*kept, {"step": step, **weights}]


def runs_dir(storage: str, experiment: str) -> str:
    """Where the trials' Train runs live: beside Tune's trial folders."""
    return join(storage, experiment, "runs")


def run_trial(config: dict[str, Any], *, exp: Experiment, root: str, data, storage: str) -> None:
    """The Tune trainable (bound with ``tune.with_parameters``); ``config`` holds this trial's weights."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False  # vidpred prints its own progress
    weights = {k: float(v) for k, v in config.items()}
    trial = tune.get_context().get_trial_id()
    state = TrialState.of(tune.get_checkpoint())
    schedule = extend(state.schedule, state.step, weights)
    extra = {**weights, "schedule": json.dumps(schedule)}
    runs, objective = runs_dir(storage, exp.name), exp.objective
    if exp.scheduler.kind != "pbt":
        cfg = resolve_auto(exp.trial_config(weights))
        reporter = ValidationReporter(objective.sharpness_weight, storage, extra)
        trainer_for(cfg, root, trial, runs, data, callbacks=[reporter]).fit()
        return
    total = exp.trial_config(weights).train.steps
    interval = exp.scheduler.perturbation_interval or max(total // 4, 1)
    while state.step < total:
        end = min((state.step // interval + 1) * interval, total)
        cfg = resolve_auto(exp.trial_config(weights, steps=end, init_from=state.checkpoint))
        result = trainer_for(cfg, root, run_name(trial, state), runs, data).fit()
        if result.checkpoint is None:
            raise RuntimeError(f"trial {trial}: steps {state.step}-{end} finished without a checkpoint")
        start, state = state.step, TrialState(end, as_uri(storage, result.checkpoint.path), schedule)
        metrics = dict(result.metrics or {})
        # PBT's clock: the step, except that the last interval reports its start, so that PBT never perturbs
        # a finished trial (it would copy the donor's final result and give it weights it never trained with)
        state.report({**metrics, **derived(metrics, objective.sharpness_weight), **extra,
                      "checkpoint_path": state.checkpoint, PBT_CLOCK: end if end < total else start})


def run_name(trial: str, state: TrialState) -> str:
    """One Train run per (trial, start step, starting checkpoint): a restart of the same interval resumes
    that run's own checkpoints; an interval started from a donor's checkpoint is a new run."""
    if state.checkpoint is None:
        return f"{trial}-s{state.step}"
    return f"{trial}-s{state.step}-{hashlib.sha1(state.checkpoint.encode()).hexdigest()[:8]}"
