"""The memory planner: counts match the real modules, stages divide as ZeRO says, and an impossible request
is refused with a usable message. The activation estimate is checked against measured memory by
benchmarks/plan_check.py (a measurement, not a test: peak RSS proved too noisy on a shared CI box)."""

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


def test_choose_prefers_cheapest_fitting_layout_and_refuses_impossible():
    cfg = config.load(overrides=["model.size=large", "data.height=256", "data.width=256", "train.precision=bf16",
                                 "data.batch_size=1"])
    budget = plan.parse_bytes("16GiB")
    chosen = plan.choose(cfg, budget, world=8)
    assert chosen.total <= budget and chosen.stage > 0  # ZeRO-0 needs more than 16 GiB here
    for stage, offload in plan.LAYOUTS[: plan.LAYOUTS.index((chosen.stage, chosen.offload))]:
        assert plan.estimate(cfg, stage, offload, 1, 8).total > budget
    with pytest.raises(MemoryError, match=r"nothing fits in 2.0 GiB.*data.batch_size=1"):
        plan.choose(cfg, plan.parse_bytes("2GiB"), world=8)


def test_parse_bytes():
    assert plan.parse_bytes("24GiB") == 24 * 2**30
    assert plan.parse_bytes("80GB") == 80 * 10**9
    assert plan.parse_bytes("512MiB") == 512 * 2**20
    with pytest.raises(ValueError, match="24GiB"):
        plan.parse_bytes("lots")


def test_auto_zero_resolves_or_refuses_before_launch():
    cfg = config.load(overrides=["train.zero_stage=auto", "train.device_memory=64GiB"])
    resolved = plan.resolve_auto(cfg)
    assert resolved.train.zero_stage == 0 and resolved.train.offload_optimizer is False  # tiny: ZeRO-0 fits
    big = config.load(overrides=["train.zero_stage=auto", "train.device_memory=16GiB", "model.size=large",
                                 "data.height=256", "data.width=256", "train.precision=bf16", "data.batch_size=1",
                                 "train.num_workers=8"])
    assert plan.resolve_auto(big).train.zero_stage in (1, 2, 3)
    with pytest.raises(config.ConfigError, match=r"train.zero_stage=auto: nothing fits in 1.0 GiB"):
        plan.resolve_auto(config.load(overrides=["train.zero_stage=auto", "train.device_memory=1GiB",
                                                 "model.size=base", "data.height=256", "data.width=256"]))
    fixed = config.load(overrides=["train.zero_stage=3"])
    assert plan.resolve_auto(fixed) is fixed
