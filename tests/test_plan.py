"""The memory planner: counts match the real modules, stages divide as ZeRO says, checkpointing and
micro-batches are counted, the fastest fitting layout is chosen, and an impossible request is refused with
a usable message. The activation estimate is checked against measured memory by benchmarks/plan_check.py
(a measurement, not a test: peak RSS proved too noisy on a shared CI box)."""

import pytest

from vidpred import config
from vidpred.model import Discriminators, Generator
from vidpred.train import plan



def test_param_counts_match_real_modules():
    cfg = config.load()
    g, d = Generator(cfg.model), Discriminators(cfg.model)
    assert plan.param_counts(cfg) == (sum(p.numel() for p in g.parameters()), sum(p.numel() for p in d.parameters()))


def test_stages_partition_as_zero_says():
    n, world = 1_000_000, 8
    z0, z1, z2, z3 = (plan.model_state_bytes(n, s, False, world, bf16=False) for s in range(4))
    assert z0 == (4 * n, 4 * n, 8 * n)
    assert z1 == (4 * n, 4 * n, 8 * n // world)
    assert z2 == (4 * n, 4 * n // world, 8 * n // world)
    assert z3 == (4 * n // world, 4 * n // world, 8 * n // world)
    assert plan.model_state_bytes(n, 2, True, world, bf16=True) == (2 * n, 2 * n // world, 0)
    assert plan.model_state_bytes(n, 1, False, world, bf16=True)[2] == 12 * n // world  # fp32 master + m + v


def test_large_model_is_planned_without_allocating_it():
    cfg = config.load(overrides=["model.size=large", "data.height=256", "data.width=256", "train.precision=bf16"])
    g, d = plan.param_counts(cfg)
    assert g + d >= 300_000_000
    assert plan.activation_bytes(cfg, 2) > plan.activation_bytes(cfg, 1) > 0


LARGE = ["model.size=large", "data.height=256", "data.width=256", "train.precision=bf16"]


def test_checkpointing_is_counted_as_it_runs():
    """On the meta device backward really recomputes the checkpointed regions: less memory, more FLOPs.
    (block holds less than step where a stage's recomputation is the step's peak, as at 128x128 and more;
    at 64x64 the peak lies elsewhere and both are the same.)"""
    cfg = config.load(overrides=["model.size=base", "data.height=64", "data.width=64"])
    off, step, block = (plan.profile(cfg, 1, mode) for mode in ("off", "step", "block"))
    assert off.activations > 2 * step.activations and step.activations >= block.activations > 0
    assert off.flops < step.flops < block.flops < 2 * off.flops


def test_activations_and_flops_grow_with_the_micro_batch():
    cfg = config.load(overrides=["data.height=32", "data.width=32"])
    for mode in ("off", "block"):
        one, two, three = (plan.profile(cfg, b, mode) for b in (1, 2, 3))
        assert 0 < one.activations < two.activations < three.activations <= 3 * one.activations, mode
        assert three.flops == 3 * one.flops, mode


def test_readme_example_fits_by_trading_micro_batch_for_accumulation():
    """The README's example: large at 256x256, bf16, 8 workers x data.batch_size 4 (global batch 32) on
    24 GiB devices. The whole batch at once does not fit; a split into micro-batches does."""
    cfg = config.load(overrides=LARGE + ["data.batch_size=4", "train.num_workers=8"])
    budget = plan.parse_bytes("24GiB")
    tried = plan.candidates(cfg, 8)
    assert {(e.micro_batch, e.grad_accum) for e in tried} == {(4, 1), (2, 2), (1, 4)}
    assert min(e.total for e in tried if e.micro_batch == 4 and e.checkpointing == "off") > budget
    chosen = plan.choose(cfg, budget, 8, tried)
    assert chosen.total <= budget and chosen.micro_batch * chosen.grad_accum == 4
    assert all(e.total > budget for e in tried if e.seconds < chosen.seconds)  # nothing faster fits


def test_a_tight_device_gets_checkpointing_and_a_smaller_micro_batch():
    cfg = config.load(overrides=LARGE + ["data.batch_size=4", "train.num_workers=8"])
    budget = plan.parse_bytes("7GiB")
    tried = plan.candidates(cfg, 8)
    chosen = plan.choose(cfg, budget, 8, tried)
    assert chosen.total <= budget and chosen.checkpointing != "off"
    assert all(e.total > budget for e in tried if e.seconds < chosen.seconds)


def test_refuses_only_when_micro_batch_one_with_every_saving_does_not_fit():
    cfg = config.load(overrides=LARGE + ["data.batch_size=4", "train.num_workers=8"])
    smallest = plan.estimate(cfg, 3, True, 1, 8, "block")
    assert smallest.total == min(e.total for e in plan.candidates(cfg, 8))
    budget = smallest.total - plan.GiB // 2
    short = (smallest.total - budget) / plan.GiB
    with pytest.raises(MemoryError, match=rf"nothing fits in .* GiB per device with 8 workers at data.batch_size=4: "
                                          rf"the smallest layout, ZeRO-3 \+ offload, micro-batch 1 x grad_accum 4, "
                                          rf"activation checkpointing block, needs .* GiB, {short:.1f} GiB more"):
        plan.choose(cfg, budget, world=8)
    assert plan.choose(cfg, smallest.total, world=8) == smallest


def test_parse_bytes():
    assert plan.parse_bytes("24GiB") == 24 * 2**30
    assert plan.parse_bytes("80GB") == 80 * 10**9
    assert plan.parse_bytes("512MiB") == 512 * 2**20
    with pytest.raises(ValueError, match="24GiB"):
        plan.parse_bytes("lots")


def test_auto_zero_applies_the_whole_choice_or_refuses_before_launch():
    cfg = config.load(overrides=["train.zero_stage=auto", "train.device_memory=64GiB"])
    resolved = plan.resolve_auto(cfg)
    assert resolved.train.zero_stage == 0 and resolved.train.offload_optimizer is False  # tiny: ZeRO-0 fits
    assert resolved.train.grad_accum == 1 and resolved.train.activation_checkpointing == "off"
    big = config.load(overrides=["train.zero_stage=auto", "train.device_memory=7GiB", *LARGE, "data.batch_size=4",
                                 "train.num_workers=8"])
    chosen = plan.choose(big, plan.parse_bytes("7GiB"), 8)
    applied = plan.resolve_auto(big).train
    assert (applied.zero_stage, applied.offload_optimizer, applied.grad_accum, applied.activation_checkpointing) == \
        (chosen.stage, chosen.offload, chosen.grad_accum, chosen.checkpointing)
    with pytest.raises(config.ConfigError, match=r"train.zero_stage=auto: nothing fits in 1.0 GiB"):
        plan.resolve_auto(config.load(overrides=["train.zero_stage=auto", "train.device_memory=1GiB", *LARGE,
                                                 "train.num_workers=8"]))
    fixed = config.load(overrides=["train.zero_stage=3"])
    assert plan.resolve_auto(fixed) is fixed
