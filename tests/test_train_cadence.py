"""What a run reports to Ray Train, and when: one report per report point (the first step, every
``log_every`` steps, every checkpoint and validation step, the last step), never one per step; and
``train.max_minutes`` ending a run with a checkpoint that ``--resume`` continues."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import TINY_RUN
from test_train_e2e import run_vidpred

pytestmark = pytest.mark.slow

# Run as a script so that its callback class lives in __main__, which Ray pickles by value: the controller
# actor that calls it cannot import the tests. It records every report Ray Train's controller receives.
COUNTER = textwrap.dedent("""
    import json, sys
    from ray.train import UserCallback
    from vidpred import config, storage
    from vidpred.data.report import training_summary
    from vidpred.train import launch

    class Reports(UserCallback):
        def __init__(self, path):
            self.path = path

        def after_report(self, run_context, metrics, checkpoint):
            rank0 = metrics[0]
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": rank0["step"], "interval_steps": rank0["interval_steps"],
                                    "checkpoint": checkpoint is not None, "val": "val_psnr" in rank0,
                                    "ranks": len(metrics)}) + "\\n")

    cfg = config.load(overrides=sys.argv[2:])
    root = launch.dataset_root(cfg)
    data = training_summary(cfg.data, root)
    launch.init_ray()
    launch.trainer_for(cfg, root, launch.run_name(cfg), storage.storage_path(cfg), data,
                       callbacks=[Reports(sys.argv[1])]).fit()
""")


def test_reports_arrive_at_the_report_points_only(cli_env, tmp_path):
    script, record = tmp_path / "count_reports.py", tmp_path / "reports.jsonl"
    script.write_text(COUNTER)
    overrides = [*TINY_RUN, "--set", "train.steps=12", "--set", "train.log_every=5", "--set", "train.checkpoint_every=6",
                 "--set", "train.val_every=4", "--set", "train.tensorboard=false"]
    proc = subprocess.run([sys.executable, str(script), str(record), *[o for o in overrides if o != "--set"]],
                          env=cli_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    reports = [json.loads(line) for line in record.read_text().splitlines()]
    # first step; validations at 4, 8, 12; logging at 5, 10; checkpoints at 6, 12; 12 is also the last
    assert [r["step"] for r in reports] == [1, 4, 5, 6, 8, 10, 12], reports
    assert [r["step"] for r in reports if r["checkpoint"]] == [6, 12]
    assert [r["step"] for r in reports if r["val"]] == [4, 8, 12]
    assert sum(r["interval_steps"] for r in reports) == 12  # every step in exactly one report's means
    assert all(r["ranks"] == 2 for r in reports)


def test_max_minutes_ends_the_run_with_a_checkpoint_that_resume_continues(cli_env):
    # a budget that start-up alone spends: the run ends at its first report point, step 1
    out = run_vidpred(["train", *TINY_RUN, "--set", "train.steps=50", "--set", "train.max_minutes=0.01"], cli_env)
    assert re.search(r"step 1: train.max_minutes = 0.01 is spent: ending the run here \(49 of train.steps = 50 not "
                     r"taken\)", out), out[-4000:]
    assert "done: 1 steps" in out, out[-4000:]
    assert re.search(r"val_psnr=\d", out)  # validated at the step it ended on
    ckpt = Path(re.search(r"checkpoint: (\S+)", out).group(1))
    assert json.loads((ckpt / "meta.json").read_text())["step"] == 1
    # the budget is per invocation: a resumed run gets the one it is given
    resumed = run_vidpred(["train", "--resume", "tiny", "--set", "train.steps=3", "--set", "train.max_minutes=100"],
                          cli_env)
    assert "resumed from step 1" in resumed and "done: 3 steps" in resumed, resumed[-4000:]
