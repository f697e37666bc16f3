"""train.ema_decay: the average of the generator's weights is what a checkpoint's generator.pt holds, so what
``vidpred eval`` (load_generator) and ``vidpred export`` load; validation runs with it; a restore at another
world size takes it back.

Bare gloo ranks on 127.0.0.1 (no Ray), as in test_reshard: two ranks train a few real GAN steps at ZeRO-2 and
ZeRO-3, updating the average after each, beside a reference average computed from the gathered weights; then
they save a checkpoint as a worker does. One rank then restores it into fresh engines.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from vidpred import config

STEPS = 4
DECAY = 0.6  # the early ramp (1 + n) / (10 + n) is below it for the first steps, then DECAY: both are used
BASE = ["data.height=16", "data.width=16", "data.context=2", "data.future=2", "data.batch_size=2",
        "model.channels=8", "model.z_channels=4", "model.levels=2", "model.d_channels=8", "train.seed=5",
        "train.num_workers=2", "train.min_workers=1", "loss.w_adv=0.1", "loss.w_feat=0.1",
        f"train.ema_decay={DECAY}", "train.lr_g=0.01"]
RUNS = {f"zero{s}": BASE + [f"train.zero_stage={s}"] for s in (2, 3)}


def _runs():
    """(name, config, G engine, D engine, G's average) per run, fresh at the run's seed."""
    from vidpred.train.ema import GeneratorEMA
    from vidpred.train.selfcheck import fresh_engines

    for name, overrides in RUNS.items():
        cfg = config.load(overrides=overrides)
        g_eng, d_eng, _ = fresh_engines(cfg)
        yield name, cfg, g_eng, d_eng, GeneratorEMA(g_eng, cfg.train.ema_decay)


def _predict(generator, frames: torch.Tensor) -> torch.Tensor:
    """Two future frames after ``frames`` with fixed noise."""
    torch.manual_seed(7)
    return generator.predict(frames, future=2)


def _write(rank, world, port, out_dir):
    import torch.distributed as dist

    from vidpred.model import to_model_space
    from vidpred.train import checkpoint
    from vidpred.train.selfcheck import init_rank, synthetic_batch
    from vidpred.train.step import all_finite, take_step

    init_rank(rank, world, port)
    for name, cfg, g_eng, d_eng, ema in _runs():
        reference = {k: v.clone() for k, v in checkpoint.consolidated_state(g_eng).items()}
        for step in range(STEPS):
            take_step(g_eng, d_eng, iter(synthetic_batch(cfg, rank, step).split(cfg.micro_batch)), cfg, rank, step,
                      all_finite)
            keep = min(DECAY, (1 + step) / (10 + step))
            ema.update()
            now = checkpoint.consolidated_state(g_eng)
            reference = {k: keep * reference[k] + (1 - keep) * now[k] for k in reference}
        averaged = ema.state_dict()
        raw = checkpoint.consolidated_state(g_eng)
        frames = to_model_space(synthetic_batch(cfg, 0, 0)[:, : cfg.data.context])
        with ema.swapped_in():  # what validation runs (after a step ZeRO-3 keeps small parameters gathered)
            inside = checkpoint.consolidated_state(g_eng)
            pred_inside = _predict(g_eng.module, frames)
        after = checkpoint.consolidated_state(g_eng)
        pred_after = _predict(g_eng.module, frames)
        part = checkpoint.save(g_eng, d_eng, STEPS, cfg, rank, {"epoch": 0, "epoch_batches": STEPS}, ema)
        shutil.copytree(part, os.path.join(out_dir, name), dirs_exist_ok=True)  # merged, as Ray Train does
        shutil.rmtree(part)
        if rank == 0:
            torch.save({"averaged": averaged, "reference": reference, "raw": raw, "inside": inside, "after": after,
                        "frames": frames, "pred_inside": pred_inside, "pred_after": pred_after,
                        "updates": ema.updates}, os.path.join(out_dir, f"{name}.written.pt"))
        dist.barrier()
        del g_eng, d_eng
    dist.destroy_process_group()


def _read(rank, world, port, out_dir):
    import torch.distributed as dist

    from vidpred.train import checkpoint
    from vidpred.train.selfcheck import init_rank

    init_rank(rank, world, port)
    for name, _, g_eng, d_eng, ema in _runs():
        checkpoint.restore(g_eng, d_eng, os.path.join(out_dir, name), ema)
        got = {"averaged": ema.state_dict(), "updates": ema.updates}
        if rank == 0:
            torch.save(got, os.path.join(out_dir, f"{name}.read.pt"))
        dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from vidpred.train.selfcheck import spawn

    out = tmp_path_factory.mktemp("ema")
    threads = torch.get_num_threads()
    spawn(_write, 2, str(out))
    spawn(_read, 1, str(out))
    torch.set_num_threads(threads)
    return out


def _assert_same(a: dict, b: dict, what: str, exact: bool = False) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), (what, k)
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=f"{what}: {k}")


@pytest.mark.parametrize("run", list(RUNS))
def test_the_average_is_what_eval_export_validation_and_a_resharded_restore_use(written, run):
    from vidpred.train import checkpoint
    from vidpred.train.export import fp32_generator_state

    w = torch.load(written / f"{run}.written.pt")
    # the average is the weights' exponential moving average (the early ramp, then DECAY), gathered whole
    _assert_same(w["averaged"], w["reference"], "average vs reference")
    moved = [k for k in w["raw"] if not torch.allclose(w["raw"][k], w["averaged"][k])]
    assert len(moved) > len(w["raw"]) // 2  # lr 0.01 for 4 steps: the average lags the weights visibly
    # validation: the module holds the average inside swapped_in, its own weights again after it, and its
    # forward uses them (a plain generator with those weights predicts the same)
    _assert_same(w["inside"], w["averaged"], "inside swapped_in")
    _assert_same(w["after"], w["raw"], "after swapped_in", exact=True)
    from vidpred.model import Generator

    for weights, key in ((w["averaged"], "pred_inside"), (w["raw"], "pred_after")):
        plain = Generator(config.load(overrides=RUNS[run]).model)
        plain.load_state_dict(weights)
        torch.testing.assert_close(w[key], _predict(plain, w["frames"]), rtol=1e-5, atol=1e-5, msg=key)
    ckpt = written / run
    meta = checkpoint.read_meta(ckpt)
    assert meta[checkpoint.GENERATOR_WEIGHTS] == "ema" and meta["ema_updates"] == STEPS
    # what vidpred eval loads, and what vidpred export writes
    generator, _ = checkpoint.load_generator(ckpt)
    _assert_same({k: v.float() for k, v in generator.state_dict().items()}, w["averaged"], "eval", exact=True)
    _assert_same(fp32_generator_state(ckpt), w["averaged"], "export", exact=True)
    # restored by one rank (a checkpoint of two): the same average, its update count kept
    r = torch.load(written / f"{run}.read.pt")
    _assert_same(r["averaged"], w["averaged"], "restored", exact=True)
    assert r["updates"] == STEPS


def test_ema_decay_is_checked_at_the_door_and_counted_by_the_planner():
    from vidpred.train import plan

    with pytest.raises(config.ConfigError, match="ema_decay"):
        config.load(overrides=["train.ema_decay=1"])
    off = config.load(overrides=["train.zero_stage=3"])
    on = config.load(overrides=["train.zero_stage=3", "train.ema_decay=0.999"])
    n_g, _ = plan.param_counts(on)
    for stage, world in ((2, 2), (3, 2), (3, 4)):
        extra = plan.estimate(on, stage, False, 1, world).params - plan.estimate(off, stage, False, 1, world).params
        assert extra == 4 * n_g // (world if stage == 3 else 1), (stage, world)
