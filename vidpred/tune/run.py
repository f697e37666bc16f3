"""The driver of ``vidpred tune``: data ready → Ray up → a new Tuner, or ``Tuner.restore`` of the same
experiment → fit → the report.

Concurrency: each trial is a Train run of ``train.num_workers`` workers; the trial's own Tune actor claims no
CPU (only 100 MiB of memory: a CPU-holding driver per trial is what deadlocks a small box). Unless
``max_concurrent_trials`` is set, as many trials run at once as the cluster holds now while leaving Ray Data
a CPU for decoding; on one CPU node a larger number is refused.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import yaml
from ray import tune
from ray.tune import Callback

from vidpred import raycompat
from vidpred.config import Config, ConfigError
from vidpred.data.report import training_summary
from vidpred.net import free_port
from vidpred.storage import exists, join, read_bytes, storage_path, write_bytes
from vidpred.console import RayOutput
from vidpred.train.launch import dataset_root, init_ray, log_file, one_node_cpus, room_problem, runs_that_fit
from vidpred.tune.experiment import Experiment
from vidpred.tune.trial import PBT_CLOCK, run_trial

TRIAL_ACTOR = {"memory": 100 * 2**20}
EXPERIMENT_COPY = "vidpred-experiment.yaml"


@dataclass
class TuneRun:
    exp: Experiment
    cfg: Config        # the base training config (lowest weights)
    storage: str
    grid: object       # ray.tune.ResultGrid
    finished: bool     # False: interrupted; rerun the same command to continue

    @property
    def path(self) -> str:
        return join(self.storage, self.exp.name)


def start_ray() -> None:
    """:func:`init_ray`; but a new local Ray (``RAY_ADDRESS=local``) gets a dashboard port of its own, published to
    all its processes as ``RAY_API_SERVER_ADDRESS``. Ray Train's placement-group cleaner asks the state API,
    which otherwise looks for every Ray on the host and gives up when there are two: the placement groups of
    the trials ASHA stopped then stay, and the next trials wait for CPUs forever."""
    import ray

    if not ray.is_initialized() and os.environ.get("RAY_ADDRESS") == "local" \
            and not os.environ.get("RAY_API_SERVER_ADDRESS"):
        port = free_port()
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        raycompat.init("local", dashboard_host="127.0.0.1", dashboard_port=port, logging_level="WARNING")
    init_ray()


def concurrency(exp: Experiment, cfg: Config) -> int:
    """Trials at once: the experiment's number, or what the cluster holds now; refuses a one-CPU-node layout
    that would leave Ray Data's decode tasks no CPU (the run would hang forever)."""
    import ray

    t = cfg.train
    if t.use_gpu:
        gpus = ray.cluster_resources().get("GPU", 0.0)
        fits = math.floor(gpus / (t.num_workers * t.gpus_per_worker) + 1e-9)
        return exp.max_concurrent_trials or max(fits, 1)
    cpus = one_node_cpus()
    fits = runs_that_fit(cfg, cpus if cpus is not None else ray.cluster_resources().get("CPU", 0.0))
    wanted = exp.max_concurrent_trials or max(fits, 1)
    if cpus is not None and (problem := room_problem(
            cfg, cpus, "this machine", runs=wanted,
            advice=f"use max_concurrent_trials: {fits} or lower" if fits >= 1 else
            "lower resources.num_workers or resources.cpus_per_worker (fractional CPUs are fine)")):
        raise ConfigError(problem)
    return wanted


def scheduler_of(exp: Experiment, cfg: Config):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    s, steps = exp.scheduler, cfg.train.steps
    if s.kind == "asha":
        return ASHAScheduler(time_attr="step", max_t=steps, grace_period=min(s.grace_period or cfg.train.val_every,
                             steps), reduction_factor=s.reduction_factor, brackets=s.brackets)
    if s.kind == "pbt":
        return PopulationBasedTraining(
            time_attr=PBT_CLOCK, perturbation_interval=s.perturbation_interval or max(steps // 4, 1),
            hyperparam_mutations=exp.mutations(), quantile_fraction=s.quantile_fraction,
            resample_probability=s.resample_probability, synch=s.synch)
    return FIFOScheduler()


def searcher_of(exp: Experiment, concurrent: int):
    """Tune's variant generator takes the concurrency limit itself: given as ``search_alg``, Tune ignores
    ``max_concurrent_trials`` for it, and every trial would start at once (a deadlock on a small box)."""
    from ray.tune.search import BasicVariantGenerator

    if exp.searcher.kind == "optuna":
        exp.check_searcher_installed()
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=exp.searcher.seed))
    return BasicVariantGenerator(random_state=exp.searcher.seed, max_concurrent=concurrent)


def _same_experiment(exp: Experiment, path: str, cfg: Config) -> None:
    """A rerun continues the experiment only when the file still says the same (else: a new name)."""
    saved_uri = join(path, EXPERIMENT_COPY)
    if not exists(saved_uri, cfg.data):
        return
    saved = yaml.safe_load(read_bytes(saved_uri, cfg.data))
    now = exp.model_dump(mode="json", exclude={"source_dir"})
    if saved != now:
        changed = sorted(k for k in now if now.get(k) != saved.get(k))
        raise ConfigError(f"experiment {exp.name} at {path} was started from a different experiment file "
                          f"({', '.join(changed)} differ): to continue it, restore those values; to start "
                          f"afresh, give the experiment a new name")


def tune_experiment(exp: Experiment, verbose: bool = False) -> TuneRun:
    """Run (or continue) the experiment; returns its results. The console shows vidpred's lines (one per
    finished trial); Ray's and Tune's own output goes to ``<experiment>/logs/ray.log`` (``verbose``: live too)."""
    exp.check_searcher_installed()
    cfg = exp.base_training()
    root = dataset_root(cfg)
    data = training_summary(cfg.data, root)
    if not data.usable("val"):
        raise ConfigError(f"{root} has no usable video under videos/val/: the objective ({exp.objective.metric}) "
                          "is a validation metric on held-out clips")
    storage = storage_path(cfg, "tune", configured=exp.storage_path)
    path = join(storage, exp.name)
    logs = log_file(cfg, storage, exp.name)
    with RayOutput(logs, verbose) as output:
        start_ray()
        output.attach()
        print(f"[vidpred] Ray's and Tune's own output: {logs}" + ("" if verbose else " (--verbose shows it here)"),
              flush=True)
        return _tune(exp, cfg, root, data, storage, path, verbose)


def _tune(exp: Experiment, cfg: Config, root: str, data, storage: str, path: str, verbose: bool) -> TuneRun:
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, exp=exp, root=root, data=data, storage=storage), TRIAL_ACTOR)
    if tune.Tuner.can_restore(path):
        _same_experiment(exp, path, cfg)
        print(f"[vidpred] continuing experiment {path}", flush=True)
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        write_bytes(join(path, EXPERIMENT_COPY),
                    yaml.safe_dump(exp.model_dump(mode="json", exclude={"source_dir"})).encode(), cfg.data)
        tuner = new_tuner(exp, cfg, trainable, storage, verbose)
    grid = tuner.fit()
    finished = grid.num_terminated + grid.num_errors >= exp.num_samples  # else interrupted (Ctrl-C, SIGTERM)
    return TuneRun(exp=exp, cfg=cfg, storage=storage, grid=grid, finished=finished)


def new_tuner(exp: Experiment, cfg: Config, trainable, storage: str, verbose: bool = False):
    n = concurrency(exp, cfg)
    if exp.scheduler.kind == "pbt" and exp.num_samples > n:
        raise ConfigError(f"num_samples = {exp.num_samples}: PBT's population must run at once, and "
                          f"{n} trials fit (max_concurrent_trials): lower num_samples or give the trials more room")
    print(f"[vidpred] tuning {exp.name}: {exp.num_samples} trials, {exp.scheduler.kind} / {exp.searcher.kind}, "
          f"{n} at a time, each {cfg.train.num_workers} worker(s) × {cfg.train.steps} steps; objective "
          f"{exp.objective.mode} {exp.objective.metric}", flush=True)
    return tune.Tuner(
        trainable, param_space=exp.param_space(),
        tune_config=tune.TuneConfig(metric=exp.objective.metric, mode=exp.objective.mode,
                                    scheduler=scheduler_of(exp, cfg), search_alg=searcher_of(exp, n),
                                    num_samples=exp.num_samples,
                                    max_concurrent_trials=None if exp.searcher.kind == "random" else n),
        run_config=tune.RunConfig(name=exp.name, storage_path=storage, verbose=1 if verbose else 0,
                                  callbacks=[Progress(exp)],
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))


class Progress(Callback):
    """One line per finished trial: its objective and weights."""

    def __init__(self, exp: Experiment):
        self.exp = exp

    def on_trial_complete(self, iteration, trials, trial, **info):
        r, objective = trial.last_result or {}, self.exp.objective.metric
        weights = " ".join(f"{k}={r[k]:.4g}" for k in self.exp.space if k in r)
        value = f"{r[objective]:.4f}" if isinstance(r.get(objective), float) else "-"
        print(f"[vidpred] trial {trial.trial_id} finished at step {r.get('step', '-')}: {objective}={value} {weights}",
              flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"[vidpred] trial {trial.trial_id} failed at step {(trial.last_result or {}).get('step', '-')}: "
              f"{getattr(trial, 'error_file', None) or 'see the log file above'}", flush=True)
