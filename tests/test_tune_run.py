"""vidpred tune end to end on 2 cores: real Ray Tune over real Ray Train trials (DeepSpeed ZeRO-2, one worker
of 0.49 CPU each, the tiny model on 4 synthetic clips). The shipped tune/smoke*.yaml are what runs."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import REPO
from vidpred import config as config_mod

pytestmark = pytest.mark.slow


def start(args, env) -> subprocess.Popen:
    """``vidpred ARGS`` in its own session, so that it and the Ray it starts can be stopped as one group."""
    return subprocess.Popen([sys.executable, "-m", "vidpred", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


@contextlib.contextmanager
def killed_on_failure(proc: subprocess.Popen):
    """Any exception inside, pytest-timeout's included, kills the run's process group: a run left behind
    would keep its Ray cluster and hold CPUs for the rest of the suite."""
    try:
        yield
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    with killed_on_failure(proc):
        return proc.communicate(timeout=timeout)[0]


def run_vidpred(args, env, expect_rc: int = 0, timeout: float = 600) -> str:
    proc = start(args, env)
    out = finish(proc, timeout)
    assert proc.returncode == expect_rc, f"exit {proc.returncode}\n{out[-8000:]}"
    return out


def env_for(tmp: Path) -> dict:
    """As the cli_env fixture: a private cache (the synthetic set, tune/ and runs/ go there), a Ray of its own."""
    return dict(os.environ, VIDPRED_CACHE=str(tmp / "cache"), PYTHONUNBUFFERED="1", RAY_ADDRESS="local")


def report_dir(env, name: str) -> Path:
    return Path(env["VIDPRED_CACHE"]) / "tune" / name / "report"


def read_rows(report: Path) -> list[dict]:
    with open(report / "results.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def asha(tmp_path_factory):
    """tune/smoke.yaml run once: 4 ASHA trials, 2 at a time."""
    env = env_for(tmp_path_factory.mktemp("asha"))
    out = run_vidpred(["tune", str(REPO / "tune" / "smoke.yaml")], env)
    return env, out


def test_asha_runs_four_trials_and_writes_every_output(asha):
    env, out = asha
    report = report_dir(env, "smoke-asha")
    rows = read_rows(report)
    assert len(rows) == 4 and {r["status"] for r in rows} <= {"done", "stopped"}
    scores = [float(r["val_score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert any(r["status"] == "done" and r["step"] == "12" for r in rows)
    for row in rows:  # every trial reports the validation metrics, the gains, the sharpness and the loss terms
        for key in ("val_psnr", "val_ssim", "val_copy_last_psnr", "val_psnr_gain", "val_ssim_gain",
                    "val_sharpness", "rec", "kl", "adv", "feat", "g_total", "d_loss", "w_adv", "w_feat"):
            assert row[key] not in ("", None) and float(row[key]) == float(row[key]), (key, row)
    md = (report / "results.md").read_text()
    assert md.startswith("# smoke-asha: 4 trials, sorted by val_score (max)") and f"| 1 | {rows[0]['trial_id']} |" in md
    with Image.open(report / "objective.png") as png:
        assert png.format == "PNG" and png.size[0] >= 700
    summary = json.loads((report / "summary.json").read_text())
    assert summary["trial_id"] == rows[0]["trial_id"]
    checkpoint = Path(summary["checkpoint_path"])
    assert (checkpoint / "generator.pt").is_file() and json.loads((checkpoint / "meta.json").read_text())["step"] >= 3
    assert f"best checkpoint: {checkpoint}" in out and "best config:" in out
    weights = yaml.safe_load((report / "best.yaml").read_text())["loss"]
    assert weights["w_adv"] == pytest.approx(float(rows[0]["w_adv"]), rel=1e-3)


def test_the_best_config_trains_unchanged(asha, tmp_path):
    env, _ = asha
    best = report_dir(env, "smoke-asha") / "best.yaml"
    config_mod.load(best)  # as vidpred train reads it
    out = run_vidpred(["train", "--config", str(best), "--set", "train.steps=2", "--set", "train.name=from-best"], env)
    assert re.search(r"done: 2 steps", out) and "checkpoint:" in out, out[-3000:]


def test_pbt_perturbs_the_weights_and_exports_the_schedule(tmp_path):
    env = env_for(tmp_path)
    out = run_vidpred(["tune", str(REPO / "tune" / "smoke-pbt.yaml")], env)
    report = report_dir(env, "smoke-pbt")
    schedules = json.loads((report / "schedules.json").read_text())
    assert len(schedules) == 2
    perturbed = {t: s for t, s in schedules.items() if len(s) > 1}
    assert perturbed, schedules  # the worse trial copied the better one at step 4 and moved its weights
    (trial, schedule), = perturbed.items()
    donor = next(s for t, s in schedules.items() if t != trial)
    assert [p["step"] for p in schedule] == [0, 4] and schedule[0] == donor[0]  # it inherits the donor's history
    assert schedule[1] != schedule[0]
    assert re.search(r"started from \S+/runs/\S+-s0/checkpoint_\S+ at step 4", out), out[-4000:]
    best = config_mod.load(report / "best.yaml")
    rows = read_rows(report)
    assert len(rows) == 2 and all(r["status"] == "done" and r["step"] == "8" for r in rows)
    if rows[0]["trial_id"] == trial:
        assert [p.step for p in best.loss.schedule] == [0, 4]
        assert best.loss.at(5).w_adv == pytest.approx(schedule[1]["w_adv"])


def test_an_interrupted_experiment_continues_from_s3(tmp_path, s3_server):
    """Ctrl-C the driver once the first trial finished; the same command continues the experiment (stored on
    S3: Tune's state, the trials' Train checkpoints, the report) and does not run that trial again. With
    Optuna installed the searcher is TPE (its state is restored too)."""
    bucket = s3_server.make_bucket("tune-resume")
    raw = yaml.safe_load((REPO / "tune" / "smoke.yaml").read_text())
    raw.update(name="resume", num_samples=2, max_concurrent_trials=1, scheduler="fifo",
               storage_path=f"s3://{bucket}/experiments",
               searcher={"kind": "optuna" if _has_optuna() else "random", "seed": 0})
    raw["base"]["train"]["steps"] = 6
    exp = tmp_path / "resume.yaml"
    exp.write_text(yaml.safe_dump(raw))
    env = {**env_for(tmp_path), **s3_server.env()}

    proc, seen = start(["tune", str(exp)], env), []
    with killed_on_failure(proc):
        for line in proc.stdout:
            seen.append(line)
            if first := re.match(r"\[vidpred\] trial (\S+) finished", line):
                os.killpg(proc.pid, signal.SIGINT)
                break
        else:
            pytest.fail("the driver ended before a trial finished:\n" + "".join(seen)[-6000:])
    out = finish(proc, 300)
    assert proc.returncode == 130 and "Run the same command again to continue it" in out, out[-4000:]

    out = run_vidpred(["tune", str(exp)], env)
    assert "continuing experiment" in out
    assert f"trial {first.group(1)} finished" not in out  # not run again
    body = s3_server.client().get_object(Bucket=bucket, Key="experiments/resume/report/results.csv")["Body"]
    rows = list(csv.DictReader(io.StringIO(body.read().decode())))
    assert len(rows) == 2 and all(r["status"] == "done" for r in rows)
    assert first.group(1) in {r["trial_id"] for r in rows}
    assert all(r["checkpoint_path"].startswith(f"s3://{bucket}/experiments/resume/runs/") for r in rows)


def _has_optuna() -> bool:
    import importlib.util

    return importlib.util.find_spec("optuna") is not None
