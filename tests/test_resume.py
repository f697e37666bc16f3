"""``vidpred train --resume``: a run stopped at a checkpoint and resumed continues the loss curve of the
same run never stopped — same step, engines, data position (mid-epoch) and noise."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_RUN
from test_train_e2e import run_vidpred

pytestmark = pytest.mark.slow

# 4 train videos × 4 clips, 2 workers, batch 2: 4 batches per worker per epoch. Stopping at step 6 leaves
# the run in epoch 1 with 2 of its batches consumed; steps 7-10 cross into epoch 2.
STOP, TOTAL = 6, 10
# Same seed, same data, same noise, same reduction order: on CPU the resumed run's final weights were
# bitwise identical to the uninterrupted run's (2026-11-28). The losses are compared as logged (4 decimals);
# the weights within WEIGHT_TOL, which a skipped or repeated batch exceeds by orders of magnitude.
REL_TOL = 1e-4
WEIGHT_TOL = 1e-6
# train.ema_decay: generator.pt holds the average of the weights, so the final comparison below also checks that
# a resume carries the average (and its update count) on rather than starting it over
COMMON = [*TINY_RUN, "--set", "train.val_every=1000", "--set", "train.tensorboard=false",
          "--set", "train.ema_decay=0.9"]


def losses(out: str) -> dict[int, dict[str, float]]:
    """{step: {term: value}} from rank 0's progress lines (log_every=1: each line is one step's losses)."""
    found = {}
    for step, terms in re.findall(r"step (\d+)/\d+ (.*?) \((?:first step|\S+ steps/s)", out):
        found[int(step)] = {k: float(v) for k, v in re.findall(r"(\w+)=(\S+)", terms)}
    return found


def last_checkpoint(out: str) -> Path:
    return Path(re.search(r"checkpoint: (\S+)", out).group(1))


def with_name(name: str) -> list[str]:
    return [*COMMON, "--set", f"train.name={name}"]


def test_resume_continues_the_uninterrupted_curve(cli_env, tmp_path):
    full_out = run_vidpred(["train", *with_name("full"), "--set", f"train.steps={TOTAL}"], cli_env)
    full = losses(full_out)
    first = run_vidpred(["train", *with_name("part"), "--set", f"train.steps={STOP}"], cli_env)
    ckpt = last_checkpoint(first)
    meta = json.loads((ckpt / "meta.json").read_text())
    assert (meta["step"], meta["epoch"], meta["epoch_batches"]) == (STOP, 1, 2), meta

    resumed_out = run_vidpred(["train", "--resume", "part", "--set", f"train.steps={TOTAL}"], cli_env)
    assert f"resuming {ckpt.parent} from its checkpoint at step {STOP} (data epoch 1, 2 batches into it)" in resumed_out
    assert f"resumed from step {STOP}" in resumed_out
    part, resumed = losses(first), losses(resumed_out)
    assert sorted(part) == list(range(1, STOP + 1)) and sorted(resumed) == list(range(STOP + 1, TOTAL + 1))
    for step, terms in {**part, **resumed}.items():
        for key in ("g_total", "rec", "kl", "adv", "feat", "d_loss"):
            assert terms[key] == pytest.approx(full[step][key], rel=REL_TOL, abs=1e-4), (step, key)
    end, end_full = last_checkpoint(resumed_out), last_checkpoint(full_out)
    assert json.loads((end / "meta.json").read_text())["step"] == TOTAL
    assert json.loads((end / "meta.json").read_text())["generator_weights"] == "ema"
    a, b = (torch.load(c / "generator.pt") for c in (end, end_full))
    assert max(float((a[k] - b[k]).abs().max()) for k in b) <= WEIGHT_TOL

    # refusals, before any worker starts: a layout the checkpoint cannot load, a run already done, no such run
    for args, message in (
        (["--resume", "part", "--set", "train.zero_stage=3"], "train.zero_stage: saved 2, now 3"),
        (["--resume", str(ckpt.parent)], f"already at step {TOTAL}"),
        (["--resume", "nosuchrun"], "holds no checkpoint"),
    ):
        proc = subprocess.run([sys.executable, "-m", "vidpred", "train", *args], env=cli_env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr[-2000:])
