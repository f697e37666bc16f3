"""``vidpred tune EXPERIMENT.yaml``: run or continue a tuning experiment, then write its report."""

from __future__ import annotations

import argparse
from pathlib import Path


def _tune(args: argparse.Namespace) -> int:
    from vidpred.tune import experiment

    exp = experiment.load(args.experiment, args.set)
    if args.check:
        print(exp.base_training().to_yaml(), end="")
        print(f"# experiment {exp.name}: valid ({exp.num_samples} trials, {exp.scheduler.kind} / "
              f"{exp.searcher.kind}, objective {exp.objective.mode} {exp.objective.metric})")
        return 0
    from vidpred.tune.report import write_report
    from vidpred.tune.run import tune_experiment

    run = tune_experiment(exp, verbose=args.verbose)
    report = write_report(run, args.out)
    if not run.finished:
        print(f"[vidpred] experiment {run.path} interrupted; partial report in {report.out}. "
              f"Run the same command again to continue it.", flush=True)
        return 130
    print(f"[vidpred] {report.describe()}", flush=True)
    return 0 if report.best is not None else 1


def add_parser(sub) -> None:
    t = sub.add_parser("tune", help="search the loss weights with Ray Tune (ASHA, PBT, random, Optuna TPE)")
    t.add_argument("experiment", type=Path, help="experiment YAML, e.g. tune/asha.yaml (see docs/tune.md)")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one value of the base training config, e.g. --set train.steps=100 (repeatable)")
    t.add_argument("--out", help="report folder or s3:// URI (default: <storage>/<experiment>/report)")
    t.add_argument("--check", action="store_true", help="validate the experiment, print the base config, exit")
    t.add_argument("--verbose", action="store_true",
                   help="show Ray's and Tune's own output live (always in <experiment>/logs/ray.log)")
    t.set_defaults(func=_tune)
