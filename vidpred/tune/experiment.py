"""A tuning experiment as data: the YAML that ``vidpred tune`` reads, validated at the door.

Every mistake is a :class:`ConfigError` naming the field (``space.w_adv.low``, ``scheduler.grace_period``,
``base: train.steps``...) before Ray starts. The base training config is a ``vidpred train`` config
(``base_config`` file < ``base`` mapping < ``--set``); ``resources`` and each trial's weights go on top.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vidpred import config as config_mod
from vidpred.config import SCHEDULED_WEIGHTS, Config, ConfigError

VAL_METRICS = ("val_psnr", "val_ssim", "val_copy_last_psnr", "val_copy_last_ssim", "val_sharpness")
DERIVED_METRICS = ("val_psnr_gain", "val_ssim_gain", "val_sharpness_error", "val_score")
LOSS_METRICS = ("rec", "kl", "adv", "feat", "cycle", "g_total", "adv_frame", "adv_clip", "feat_frame",
                "feat_clip", "d_frame", "d_clip", "d_loss")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Distribution(_Model):
    """One weight's search space: ``{dist: loguniform, low: 1e-3, high: 1e-1}``, ``{dist: choice, values:
    [...]}``, or a plain number (fixed)."""
    dist: Literal["loguniform", "uniform", "choice", "fixed"]
    low: float | None = Field(None, ge=0, allow_inf_nan=False)
    high: float | None = Field(None, ge=0, allow_inf_nan=False)
    values: list[float] | None = Field(None, min_length=1)
    value: float | None = Field(None, ge=0, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return {"dist": "fixed", "value": data}
        if isinstance(data, list):
            return {"dist": "choice", "values": data}
        return data

    @model_validator(mode="after")
    def _fields_of_dist(self) -> "Distribution":
        needs = {"loguniform": ("low", "high"), "uniform": ("low", "high"), "choice": ("values",),
                 "fixed": ("value",)}[self.dist]
        given = {k for k in ("low", "high", "values", "value") if getattr(self, k) is not None}
        if missing := [k for k in needs if k not in given]:
            raise ValueError(f"dist {self.dist} needs {' and '.join(needs)}; missing {', '.join(missing)}")
        if extra := sorted(given - set(needs)):
            raise ValueError(f"dist {self.dist} takes {' and '.join(needs)}, not {', '.join(extra)}")
        if self.low is not None and not self.low < self.high:
            raise ValueError(f"low = {self.low:g} must be below high = {self.high:g}")
        if self.dist == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0 (got {self.low:g}): a log scale never reaches 0; "
                             "use choice with 0 among the values to try switching a term off")
        if self.values is not None and any(not (v >= 0 and math.isfinite(v)) for v in self.values):
            raise ValueError(f"values {self.values}: every weight must be finite and >= 0")
        return self

    @property
    def searched(self) -> bool:
        return self.dist != "fixed"

    def domain(self):
        """The Ray Tune search domain (or the constant, when fixed)."""
        from ray import tune

        if self.dist == "fixed":
            return self.value
        if self.dist == "choice":
            return tune.choice(self.values)
        return (tune.loguniform if self.dist == "loguniform" else tune.uniform)(self.low, self.high)


class Scheduler(_Model):
    """``asha`` (default: early-stops the worst trials), ``pbt`` (perturbs the weights during training) or
    ``fifo`` (every trial runs its full budget). Budgets are in optimizer steps (``train.steps``)."""
    kind: Literal["asha", "pbt", "fifo"] = "asha"
    grace_period: int | None = Field(None, ge=1, description="asha: steps before a trial can be stopped; "
                                     "None: train.val_every (the first validation)")
    reduction_factor: float = Field(3.0, gt=1, le=100, description="asha: keep the best 1/rf at each rung")
    brackets: int = Field(1, ge=1, le=10, description="asha: brackets of different grace periods")
    perturbation_interval: int | None = Field(None, ge=1, description="pbt: steps between perturbations; "
                                              "None: train.steps // 4")
    quantile_fraction: float = Field(0.25, gt=0, le=0.5, description="pbt: the bottom fraction copies the top")
    resample_probability: float = Field(0.25, ge=0, le=1, description="pbt: chance a weight is redrawn from "
                                        "its space instead of multiplied by 0.8 or 1.2")
    synch: bool = Field(True, description="pbt: perturb when every trial reached the interval (deterministic)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _own_fields(self) -> "Scheduler":
        own = {"asha": {"grace_period", "reduction_factor", "brackets"},
               "pbt": {"perturbation_interval", "quantile_fraction", "resample_probability", "synch"}}
        foreign = {f for kind, fields in own.items() if kind != self.kind for f in fields} & self.model_fields_set
        if foreign:
            raise ValueError(f"{', '.join(sorted(foreign))}: not used by scheduler kind {self.kind}")
        return self


class Searcher(_Model):
    """``random`` (default; Ray Tune's variant generator) or ``optuna`` (TPE; needs ``pip install optuna``)."""
    kind: Literal["random", "optuna"] = "random"
    seed: int | None = Field(0, ge=0, description="None: a different draw every time")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data


class Resources(_Model):
    """Per trial (each trial is its own distributed run); unset keys keep the base config's ``train.*``."""
    num_workers: int | None = Field(None, ge=1, le=4096)
    cpus_per_worker: float | None = Field(None, gt=0, le=512)
    gpus_per_worker: float | None = Field(None, ge=0, le=16)
    use_gpu: bool | None = None


class Objective(_Model):
    """What ranks the trials: any reported metric, maximised or minimised. The default ``val_score`` is SSIM
    gain over copy-last-frame minus ``sharpness_weight`` x |ln(RMS gradient of prediction / of truth)| on the
    held-out clips: PSNR alone rewards blur (see docs/tune.md)."""
    metric: str = "val_score"
    mode: Literal["max", "min"] = "max"
    sharpness_weight: float = Field(0.02, ge=0, allow_inf_nan=False)

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        known = (*DERIVED_METRICS, *VAL_METRICS, *LOSS_METRICS)
        if v not in known:
            raise ValueError(f"unknown metric; allowed: {', '.join(known)}")
        return v


# w_rec stays the unit the others are measured in (scaling all four together mostly rescales the step that
# Adam normalises away); w_kl spans ten times either side of its default, w_adv and w_feat from ten times
# below the defaults up to SAVP's proportions (100x the defaults: too strong for a short run, maybe right for a long one).
DEFAULT_SPACE = {
    "w_rec": Distribution(dist="fixed", value=1.0),
    "w_kl": Distribution(dist="loguniform", low=1e-4, high=1e-2),
    "w_adv": Distribution(dist="loguniform", low=1e-5, high=1e-2),
    "w_feat": Distribution(dist="loguniform", low=1e-4, high=1e-1),
}


class Experiment(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="the experiment's folder under storage_path")
    description: str | None = None
    num_samples: int = Field(8, ge=1, le=100_000, description="trials")
    max_concurrent_trials: int | None = Field(
        None, ge=1, le=10_000, description="None: as many as the cluster holds now, leaving Ray Data a CPU")
    storage_path: str | None = Field(None, description="local dir or s3:// URI; None: the base config's "
                                     "train.storage_path, else <data.cache_dir>/tune")
    base_config: str | None = Field(None, description="a vidpred train YAML, relative to this file")
    base: dict[str, Any] = Field(default_factory=dict, description="train config sections, over base_config")
    space: dict[str, Distribution] = Field(default_factory=lambda: dict(DEFAULT_SPACE),
                                           description="per loss weight (w_rec, w_kl, w_adv, w_feat)")
    scheduler: Scheduler = Field(default_factory=Scheduler)
    searcher: Searcher = Field(default_factory=Searcher)
    resources: Resources = Field(default_factory=Resources)
    objective: Objective = Field(default_factory=Objective)
    source_dir: str = Field(".", description="where relative paths resolve (the file's folder)")
    overrides: list[str] = Field(default_factory=list, description="--set section.key=value on the base")

    @field_validator("space")
    @classmethod
    def _weights(cls, v: dict[str, Distribution]) -> dict[str, Distribution]:
        if unknown := sorted(set(v) - set(SCHEDULED_WEIGHTS)):
            raise ValueError(f"{', '.join(unknown)}: not a tunable weight; allowed: {', '.join(SCHEDULED_WEIGHTS)}")
        if not any(d.searched for d in v.values()):
            raise ValueError("nothing to search: give at least one weight a distribution")
        return v

    @model_validator(mode="after")
    def _combinations(self) -> "Experiment":
        if self.scheduler.kind == "pbt" and self.searcher.kind != "random":
            raise ValueError(f"searcher {self.searcher.kind} with scheduler pbt: PBT explores by perturbing "
                             "running trials; use searcher random")
        return self

    # --- the training config of a trial -------------------------------------------------------------------
    def base_raw(self) -> dict[str, Any]:
        """base_config file < base < resources < --set, as plain data (what a best.yaml starts from)."""
        res = self.resources.model_dump(exclude_none=True)
        return config_mod.layered(Path(self.source_dir) / self.base_config if self.base_config else None,
                                  self.overrides, layers=[self.base, *([{"train": res}] if res else [])],
                                  label="base_config")

    def trial_raw(self, weights: dict[str, float], **train: Any) -> dict[str, Any]:
        return config_mod.lay_over(self.base_raw(), {"loss": dict(weights), "train": train})

    def trial_config(self, weights: dict[str, float], **train: Any) -> Config:
        """A trial's config. An elastic range is refused: trials share the cluster, and a trial that grows
        into free nodes takes them from the others' concurrency (and ASHA, PBT compare trials at equal steps
        of equal runs)."""
        try:
            cfg = config_mod.validate(self.trial_raw(weights, **train))
        except ConfigError as exc:
            raise ConfigError(f"experiment {self.name}: base: {exc}") from None
        if cfg.train.elastic:
            raise ConfigError(f"experiment {self.name}: base: train.min_workers = {cfg.train.min_workers}: a "
                              "trial runs on a fixed number of workers (train.num_workers, or resources.num_workers); "
                              "elastic runs are for vidpred train: remove train.min_workers")
        return cfg

    def base_training(self) -> Config:
        """The base config with every weight at its lowest value: validates base, resources and the space."""
        lowest = {k: (d.low if d.low is not None else min(d.values) if d.values else d.value)
                  for k, d in self.space.items()}
        return self.trial_config(lowest)

    def param_space(self) -> dict[str, Any]:
        return {k: d.domain() for k, d in self.space.items()}

    def mutations(self) -> dict[str, Any]:
        """PBT's hyperparam_mutations: every searched weight, from its own space."""
        return {k: d.domain() for k, d in self.space.items() if d.searched}

    def check_searcher_installed(self) -> None:
        if self.searcher.kind == "optuna" and importlib.util.find_spec("optuna") is None:
            raise ConfigError("searcher.kind = 'optuna': Optuna is not installed; it is optional: "
                              "`pip install optuna` (TPE), or use searcher: random")


def parse(raw: dict[str, Any], source_dir: str | Path = ".", overrides: list[str] | tuple[str, ...] = (),
          label: str = "experiment") -> Experiment:
    try:
        exp = Experiment.model_validate({**raw, "source_dir": str(source_dir), "overrides": list(overrides)})
    except ValidationError as exc:
        raise config_mod.config_error(exc, Experiment, f"invalid {label}") from None
    exp.base_training()
    return exp


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Read, validate and check an experiment file (relative paths inside resolve against its folder)."""
    p = Path(path)
    return parse(config_mod.read_yaml_mapping(p, "experiment", "experiment keys"), p.resolve().parent, overrides,
                 f"experiment {str(p)!r}")
