"""The memory planner: counts match the real modules, stages divide as ZeRO says, activation estimates
are within 20% of a CPU measurement, and an impossible request is refused with a usable message."""

import subprocess
import sys

import pytest

from vidpred import config
from vidpred.model import Discriminators, Generator
from vidpred.train import plan

MEASURE = r"""
import resource, sys, torch
from vidpred import config
from vidpred.model import Discriminators, Generator
torch.set_num_threads(1)
res, batch = int(sys.argv[1]), int(sys.argv[2])
cfg = config.load(overrides=[f"data.height={res}", f"data.width={res}"])
g, d, ctx = Generator(cfg.model), Discriminators(cfg.model), cfg.data.context
def step(n):  # the GAN step's passes, as vidpred.train.step runs them
    real = torch.rand(n, ctx + cfg.data.future, 3, res, res) * 2 - 1
    out = g(real, ctx)
    fake = torch.cat([real[:, :ctx], out.pred], 1)
    logits, _ = d(torch.cat([real, fake.detach()]), ctx)
    sum(l.float().mean() for l in logits).backward()
    fake_logits, _ = d(fake, ctx)
    (sum(l.float().mean() for l in fake_logits) + out.pred.mean()).backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
step(batch)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


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


@pytest.mark.slow
def test_activation_estimate_within_20_percent_of_measured_cpu_peak():
    """Peak-RSS growth of one step, each batch size in a fresh process; the batch-1 run is subtracted from
    both sides so that what does not scale with the batch (allocator start-up, kernels' workspaces) cancels."""
    cfg = config.load(overrides=["data.height=128", "data.width=128"])

    def peak_growth(batch: int) -> int:
        out = subprocess.run([sys.executable, "-c", MEASURE, "128", str(batch)], capture_output=True, text=True,
                             timeout=300, check=True)
        return int(out.stdout.split()[-1])

    one_measured, one_estimated = peak_growth(1), plan.activation_bytes(cfg, 1)
    for batch in (4, 8):
        measured = peak_growth(batch) - one_measured
        estimated = plan.activation_bytes(cfg, batch) - one_estimated
        assert abs(estimated - measured) <= 0.2 * measured, (batch, estimated, measured)


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
