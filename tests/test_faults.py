"""Faults: a non-finite loss skips the update (on every rank alike), repeated ones restore the last
checkpoint with lower learning rates, and a killed worker costs only the steps since the last checkpoint."""

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import TINY_RUN
from vidpred import config
from vidpred.model import Discriminators, Generator
from vidpred.train.engines import local_engines
from vidpred.train.faults import KILL_ENV, NAN_ENV, NonFinitePolicy
from vidpred.train.step import gan_step

SMALL = {"data": {"height": 16, "width": 16, "context": 2, "future": 2},
         "model": {"channels": 8, "z_channels": 4, "levels": 2, "d_channels": 8}}


def snapshot(engine):
    return ([p.detach().clone() for p in engine.module.parameters()],
            {k: [t.clone() for t in v.values() if torch.is_tensor(t)] for k, v in engine.optimizer.state.items()})


def identical(x: torch.Tensor, y: torch.Tensor) -> bool:
    return torch.allclose(x, y, rtol=0, atol=0, equal_nan=True)


def same(a, b) -> bool:
    return all(identical(x, y) for x, y in zip(a[0], b[0], strict=True)) and a[1].keys() == b[1].keys() and all(
        identical(x, y) for k in a[1] for x, y in zip(a[1][k], b[1][k], strict=True))


@pytest.fixture
def engines():
    cfg = config.Config.model_validate(SMALL)
    torch.manual_seed(0)
    g_eng, d_eng = local_engines(Generator(cfg.model), Discriminators(cfg.model), cfg)
    batch = torch.randint(0, 256, (2, 4, 16, 16, 3), dtype=torch.uint8)
    gan_step(g_eng, d_eng, batch, cfg)  # optimizer state exists from here on
    return cfg, g_eng, d_eng, batch


def test_nonfinite_d_loss_skips_both_updates(engines):
    cfg, g_eng, d_eng, batch = engines
    g0, d0 = snapshot(g_eng), snapshot(d_eng)
    logs = gan_step(g_eng, d_eng, batch, cfg, finite=lambda loss: False)
    assert logs["skipped_d"] == 1.0 and logs["skipped_g"] == 1.0
    assert same(g0, snapshot(g_eng)) and same(d0, snapshot(d_eng))
    assert all(p.requires_grad for p in d_eng.module.parameters())


def test_nonfinite_g_loss_skips_only_g(engines):
    cfg, g_eng, d_eng, batch = engines
    g0, d0 = snapshot(g_eng), snapshot(d_eng)
    verdicts = iter([True, False])  # D's loss finite, G's not
    logs = gan_step(g_eng, d_eng, batch, cfg, finite=lambda loss: next(verdicts))
    assert logs["skipped_d"] == 0.0 and logs["skipped_g"] == 1.0
    assert same(g0, snapshot(g_eng)) and not same(d0, snapshot(d_eng))


def test_a_real_nan_is_caught_before_backward(engines):
    """No stand-in verdict: the D loss itself is NaN (a NaN weight in D), and nothing is updated."""
    cfg, g_eng, d_eng, batch = engines
    with torch.no_grad():
        next(d_eng.module.parameters()).view(-1)[0] = float("nan")
    g0, d0 = snapshot(g_eng), snapshot(d_eng)
    logs = gan_step(g_eng, d_eng, batch, cfg)
    assert logs["skipped_d"] == 1.0 and not torch.isfinite(logs["d_loss"])
    assert same(g0, snapshot(g_eng)) and same(d0, snapshot(d_eng))


def test_policy_restores_after_patience_lowers_lrs_and_gives_up(engines):
    _, g_eng, d_eng, _ = engines
    t = config.load(overrides=["train.nonfinite_patience=2", "train.nonfinite_lr_factor=0.25",
                               "train.nonfinite_max_restores=1"]).train
    assert g_eng.get_lr()[0] == d_eng.get_lr()[0] == 2e-4
    policy = NonFinitePolicy(t)
    assert [policy.after_step(s) for s in (True, False, True)] == [False, False, False]  # not in a row
    assert policy.after_step(True) is True
    policy.restored(g_eng, d_eng)
    assert g_eng.get_lr()[0] == pytest.approx(5e-5) and d_eng.get_lr()[0] == pytest.approx(5e-5)
    assert policy.state() == {"nonfinite_steps": 3, "nonfinite_restores": 1, "lr_scale": 0.25}
    policy.after_step(True)
    with pytest.raises(FloatingPointError, match="train.nonfinite_max_restores = 1"):
        policy.after_step(True)
    again = NonFinitePolicy(t)
    again.load(policy.state())  # the counters travel in checkpoints
    assert again.state() == policy.state() and again.streak == 0


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_one_ranks_nan_makes_every_rank_skip(stage, tmp_path):
    """2 DeepSpeed ranks: rank 1 alone sees NaN at step 2; both skip it (no collective left waiting), the
    weights do not move at that step and training goes on after it."""
    from vidpred.train.selfcheck import run

    overrides = ["data.height=32", "data.width=32", "data.context=2", "data.future=2", "data.batch_size=2",
                 f"train.zero_stage={stage}"]
    result = run({"nan": overrides}, 4, str(tmp_path / "runs.pt"), nan_at={1: [2]})["nan"]
    assert [log["skipped_d"] for log in result["losses"]] == [0.0, 0.0, 1.0, 0.0]
    after = result["g_after"]
    assert all(torch.equal(after[1][k], after[2][k]) for k in after[1])
    assert any(not torch.equal(after[2][k], after[3][k]) for k in after[2])


def run_tiny(args, env, tmp_path, timeout=1200):
    from test_train_e2e import run_vidpred

    return run_vidpred(["train", *TINY_RUN, "--set", "train.val_every=1000", *args], env, timeout)


def final_meta(out: str) -> dict:
    return json.loads((Path(re.search(r"checkpoint: (\S+)", out).group(1)) / "meta.json").read_text())


@pytest.mark.slow
def test_killed_worker_resumes_from_last_checkpoint(cli_env, tmp_path):
    """Rank 1's process is SIGKILLed after step 5 (checkpoints every 3): Ray Train restarts the workers from
    the step-3 checkpoint and the run still ends at step 8."""
    cli_env[KILL_ENV] = f"1:5:{tmp_path / 'killed'}"
    out = run_tiny(["--set", "train.steps=8", "--set", "train.max_failures=1"], cli_env, tmp_path)
    assert (tmp_path / "killed").exists(), out[-3000:]
    assert "resumed from step 3" in out, out[-3000:]
    assert re.search(r"done: 8 steps", out), out[-3000:]
    assert final_meta(out)["step"] == 8


@pytest.mark.slow
def test_repeated_nans_restore_the_checkpoint_and_lower_the_lrs(cli_env, tmp_path):
    """Rank 1 sees NaN at steps 4, 5, 6 (patience 3): every rank skips them, then the step-3 checkpoint is
    restored with both learning rates halved, and the run ends at step 8 having counted 3 skipped steps."""
    cli_env[NAN_ENV] = "1:4,5,6"
    out = run_tiny(["--set", "train.steps=8", "--set", "train.lr_g=2e-4", "--set", "train.lr_d=4e-4"],
                   cli_env, tmp_path)
    assert re.search(r"step 6: 3 steps in a row with a non-finite loss: restored the checkpoint of step 3, "
                     r"learning rates × 0.5 \(now G 0.0001, D 0.0002", out), out[-4000:]
    assert len(re.findall(r"non-finite loss on some rank, update skipped", out)) == 3
    assert re.search(r"done: 8 steps.* nonfinite_steps=3", out), out[-3000:]
    meta = final_meta(out)
    assert meta["step"] == 8 and meta["nonfinite_steps"] == 3 and meta["lr_scale"] == 0.5
