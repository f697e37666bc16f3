"""Gradient accumulation (train.grad_accum micro-batches per optimizer step) stays sound when a micro-batch's
loss is non-finite: both engines step once, on the same micro-batch, with what the finite micro-batches
gave; and under DeepSpeed (ZeRO 0-3, fp32 and bf16) with activation checkpointing the same steps come out
as on one process without DeepSpeed."""

from __future__ import annotations

import pytest
import torch

from vidpred import config
from vidpred.model import Discriminators, Generator, as_floats, to_model_space
from vidpred.train.engines import local_engines
from vidpred.train.step import Window, gan_step

SMALL = ["data.height=16", "data.width=16", "data.context=2", "data.future=2", "model.channels=8",
         "model.z_channels=4", "model.levels=2", "model.d_channels=8", "train.grad_clip=0"]


def clips(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 4, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


class Recorder:
    """Wraps an engine's ``step``: the micro-batch of ``window`` each call came in, and the gradients it applied."""

    def __init__(self, engine, window: Window | None = None):
        self.calls, self.grads, step = [], [], engine.step

        def recorded():
            self.calls.append(None if window is None else window.done)
            self.grads.append([p.grad.clone() for p in engine.module.parameters()])
            step()

        engine.step = recorded


def run_window(cfg, micro_batches, verdicts, mode="off"):
    """One optimizer step over ``micro_batches`` with local engines; ``verdicts`` answers the finiteness checks
    in order. Returns (G recorder, D recorder, the micro-batches' logs)."""
    torch.manual_seed(0)
    g_eng, d_eng = local_engines(Generator(cfg.model, mode), Discriminators(cfg.model, mode), cfg)
    window = Window(len(micro_batches))
    g_rec, d_rec = Recorder(g_eng, window), Recorder(d_eng, window)
    answers = iter(verdicts)
    torch.manual_seed(1)
    logs = [gan_step(g_eng, d_eng, b, cfg, finite=lambda loss: next(answers), window=window) for b in micro_batches]
    assert window.done == window.size
    return g_rec, d_rec, logs


def test_both_engines_step_once_on_the_last_micro_batch_after_a_skipped_one():
    cfg = config.load(overrides=SMALL + ["data.batch_size=2", "train.grad_accum=2"])
    first, second = clips(1, 1), clips(1, 2)
    g_rec, d_rec, logs = run_window(cfg, [first, second], [False, True, True])  # micro-batch 1's D loss is NaN
    assert [log["skipped_d"] for log in logs] == [1.0, 0.0]
    assert g_rec.calls == d_rec.calls == [1]  # one step each, both on micro-batch 2 (index 1): the same boundary

    # The reference: micro-batch 2 alone as a step of one (its noise drawn after micro-batch 1's, as above).
    ref_cfg = config.load(overrides=SMALL + ["data.batch_size=1"])
    torch.manual_seed(0)
    g_eng, d_eng = local_engines(Generator(ref_cfg.model), Discriminators(ref_cfg.model), ref_cfg)
    ref_g, ref_d = Recorder(g_eng), Recorder(d_eng)
    torch.manual_seed(1)
    with torch.no_grad():
        # draws micro-batch 1's noise (both paths', as gan_step's forward does)
        g_eng(to_model_space(first), ref_cfg.data.context, prior_path=ref_cfg.loss.gan_paths == "both")
    gan_step(g_eng, d_eng, second, ref_cfg)
    # Accumulated over 2 micro-batches, each weighs 1/2: the skipped one gives nothing, the other half of
    # its gradient. Halving is exact in floating point, so D's gradient is bitwise half the reference's.
    assert all(torch.equal(a, b / 2) for a, b in zip(d_rec.grads[0], ref_d.grads[0], strict=True))
    # G's loss went through D after D's step, whose Adam update differs from the reference's by rounding.
    for a, b in zip(g_rec.grads[0], ref_g.grads[0], strict=True):
        torch.testing.assert_close(a, b / 2, rtol=1e-3, atol=1e-6)


def test_an_engine_with_no_finite_micro_batch_does_not_step():
    """Every G loss of the step is NaN: G does not step (a step on no gradient would still move Adam's
    weights); D does, on the same boundary as always."""
    cfg = config.load(overrides=SMALL + ["data.batch_size=2", "train.grad_accum=2"])
    g_rec, d_rec, logs = run_window(cfg, [clips(1, 1), clips(1, 2)], [True, False, True, False])
    assert g_rec.calls == [] and d_rec.calls == [1]
    assert [log["skipped_g"] for log in logs] == [1.0, 1.0]


def test_a_step_of_one_micro_batch_is_unchanged():
    """train.grad_accum = 1 (the default): D steps before G's pass through it and G steps after, as before."""
    cfg = config.load(overrides=SMALL + ["data.batch_size=2"])
    g_rec, d_rec, _ = run_window(cfg, [clips(2, 1)], [True, True])
    assert g_rec.calls == d_rec.calls == [0]


def test_micro_batch_and_step_counting_in_the_config():
    cfg = config.load(overrides=["data.batch_size=8", "train.grad_accum=4"])
    assert cfg.micro_batch == 2
    with pytest.raises(config.ConfigError, match=r"data.batch_size = 6: must be a multiple of train.grad_accum = 4"):
        config.load(overrides=["data.batch_size=6", "train.grad_accum=4"])


# ---- under DeepSpeed: 2 gloo ranks, every rank on the same clips and noise, so that the averaged gradient is
# the single-process one and each layout can be held against local engines.

STEPS = 2
LAYOUTS = {"zero0": ["train.zero_stage=0"], "zero1": ["train.zero_stage=1"], "zero2": ["train.zero_stage=2"],
           "zero3": ["train.zero_stage=3"]}
DS_BASE = SMALL + ["data.batch_size=2", "train.grad_accum=2", "train.activation_checkpointing=block",
                   "loss.w_adv=0.1", "loss.w_feat=0.1"]
POISONED = (0, 0)  # (optimizer step, micro-batch) whose D loss every rank sees as NaN


def _steps(g_eng, d_eng, cfg) -> list[dict[str, float]]:
    """STEPS optimizer steps of grad_accum micro-batches, POISONED left out; the logs of every micro-batch."""
    from vidpred.train.faults import sees_nan
    from vidpred.train.step import all_finite

    logs = []
    for step in range(STEPS):
        torch.manual_seed(100 + step)
        window = Window(cfg.train.grad_accum)
        while window.done < window.size:
            finite = sees_nan if (step, window.done) == POISONED else all_finite
            logs.append(as_floats(gan_step(g_eng, d_eng, clips(cfg.micro_batch, 10 * step + window.done), cfg,
                                           step=step, finite=finite, window=window)))
    return logs


def _rank_main(rank, world, port, runs, out_path):
    import torch.distributed as dist

    from vidpred.train.checkpoint import consolidated_state
    from vidpred.train.engines import build_engines
    from vidpred.train.selfcheck import init_rank

    init_rank(rank, world, port)
    results = {}
    for name, overrides in runs.items():
        cfg = config.load(overrides=overrides)
        g_eng, d_eng = build_engines(*models(cfg), cfg)
        logs = _steps(g_eng, d_eng, cfg)
        results[name] = {"logs": logs, "g": consolidated_state(g_eng), "d": consolidated_state(d_eng),
                         "optimizer_steps": (g_eng.global_steps, d_eng.global_steps)}
        del g_eng, d_eng
    if rank == 0:
        torch.save(results, out_path)
    dist.barrier()
    dist.destroy_process_group()


def models(cfg):
    """G and D at the run's seed, with its activation checkpointing."""
    torch.manual_seed(cfg.train.seed)
    mode = cfg.train.activation_checkpointing
    return Generator(cfg.model, mode), Discriminators(cfg.model, mode)


def local_run(overrides):
    cfg = config.load(overrides=overrides)
    g_eng, d_eng = local_engines(*models(cfg), cfg)
    logs = _steps(g_eng, d_eng, cfg)
    return {"logs": logs, "g": g_eng.module.state_dict(), "d": d_eng.module.state_dict()}


@pytest.fixture(scope="module")
def deepspeed_runs(tmp_path_factory):
    from vidpred.train.selfcheck import spawn

    runs = {name: DS_BASE + extra for name, extra in LAYOUTS.items()}
    runs["zero3_bf16"] = DS_BASE + ["train.zero_stage=3", "train.precision=bf16"]
    runs["zero3_bf16_off"] = runs["zero3_bf16"] + ["train.activation_checkpointing=off"]
    out = tmp_path_factory.mktemp("accum") / "runs.pt"
    threads = torch.get_num_threads()
    spawn(_rank_main, 2, runs, str(out))
    torch.set_num_threads(threads)
    return torch.load(out, weights_only=False)


def gap(got: dict, want: dict) -> float:
    """‖got − want‖ over every tensor, relative to ‖want‖."""
    num = sum(float((got[k].float() - want[k].float()).pow(2).sum()) for k in want)
    return (num / sum(float(want[k].float().pow(2).sum()) for k in want)) ** 0.5


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_deepspeed_accumulation_with_checkpointing_matches_local_engines(layout, deepspeed_runs):
    """ZeRO-0..3, fp32, block checkpointing, 2 micro-batches per step, the very first one NaN on every rank:
    both engines take exactly STEPS optimizer steps, and losses and weights are those of local engines
    (measured, every stage: losses within 1e-7 relative, weights within 1.7e-7 (G) and 4e-9 (D))."""
    got, want = deepspeed_runs[layout], local_run(DS_BASE)
    assert got["optimizer_steps"] == (STEPS, STEPS)
    assert [log["skipped_d"] for log in got["logs"]] == [1.0] + [0.0] * (STEPS * 2 - 1)
    for a, b in zip(got["logs"][1:], want["logs"][1:], strict=True):
        for k in ("d_loss", "g_total", "rec", "kl"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-8), (k, a[k], b[k])
    for net in ("g", "d"):
        assert gap(got[net], want[net]) < 1e-5, net


def test_deepspeed_bf16_zero3_checkpointing_matches_no_checkpointing(deepspeed_runs):
    """bf16 at ZeRO-3: block checkpointing against none. The first finite micro-batch's losses come from the
    same weights and noise, so they agree to bf16 rounding; so do the weights after the steps (measured:
    losses within 3e-5 relative, weights within 2.3e-4)."""
    got, want = deepspeed_runs["zero3_bf16"], deepspeed_runs["zero3_bf16_off"]
    assert got["optimizer_steps"] == want["optimizer_steps"] == (STEPS, STEPS)
    for k in ("d_loss", "g_total", "rec"):
        assert got["logs"][1][k] == pytest.approx(want["logs"][1][k], rel=1e-3), k
    for net in ("g", "d"):
        assert gap(got[net], want[net]) < 5e-3, net
