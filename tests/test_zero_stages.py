"""Proof per ZeRO stage: 2 ranks × 20 GAN steps at a fixed seed give the same G and D losses and the same
final weights as ZeRO-0, within fp32 reduction-order noise — for stages 1, 2, 3 and stage 2 with the
optimizer offloaded to the CPU."""

import pytest

from zero_harness import run

pytestmark = pytest.mark.slow

STEPS = 20
BASE = ["data.height=32", "data.width=32", "data.context=2", "data.future=2", "data.batch_size=2",
        "train.seed=3", "loss.w_kl=0.01", "loss.w_adv=0.1", "loss.w_feat=0.1"]
STAGES = {f"zero{s}": BASE + [f"train.zero_stage={s}"] for s in range(4)}
STAGES["zero2_offload"] = BASE + ["train.zero_stage=2", "train.offload_optimizer=true"]
# Relative, every logged loss term at every step. Stages reduce in different orders (all-reduce vs
# reduce-scatter, partitioned clipping norms), and a GAN amplifies that: at ZeRO-3 the adversarial term was
# up to 5.7e-3 off ZeRO-0 by step 19 (measured). A wrong partition or a skipped update is off by far more.
LOSS_TOL = 1e-2
# ‖w_stage − w_zero0‖ / ‖w_zero0 − w_initial‖ per network. Measured on a clean-clone CI run: ZeRO-3's generator
# 1.3% (the other layouts passed at 1%); a dropped or doubled update would be tens of percent.
WEIGHT_TOL = 3e-2


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zero")


@pytest.fixture(scope="module")
def runs(out_dir):
    return run(STAGES, STEPS, str(out_dir / "runs.pt"))


def norm(state: dict) -> float:
    return sum(float(v.float().pow(2).sum()) for v in state.values()) ** 0.5


@pytest.mark.parametrize("layout", ["zero1", "zero2", "zero3", "zero2_offload"])
def test_layout_matches_stage0(layout, runs):
    got, want = runs[layout], runs["zero0"]
    for step, (a, b) in enumerate(zip(got["losses"], want["losses"], strict=True)):
        for key in b:
            assert a[key] == pytest.approx(b[key], rel=LOSS_TOL, abs=1e-5), (step, key, a[key], b[key])
    moved = norm({k: want["g"][k] - want["g_initial"][k].float() for k in want["g"]})
    assert moved > 1e-2  # the comparison means something only if training moved the weights
    for net in ("g", "d"):
        assert got[net].keys() == want[net].keys()
        gap = norm({k: got[net][k] - want[net][k] for k in want[net]})
        scale = moved if net == "g" else norm(want["d"])
        assert gap <= WEIGHT_TOL * scale, (net, gap, scale)


@pytest.mark.parametrize("layout", ["zero0", "zero3"])
def test_export_merges_every_rank_and_loads_without_deepspeed(layout, runs, out_dir, tmp_path):
    """``vidpred export`` of a real 2-rank checkpoint (ZeRO-3: the weights exist only as shards) gives the
    trained generator, and loading it needs neither DeepSpeed nor Ray."""
    import subprocess
    import sys

    exported = tmp_path / "g.pt"
    subprocess.run([sys.executable, "-m", "vidpred", "export", str(out_dir / layout), str(exported)], check=True,
                   capture_output=True, timeout=300)
    code = ("import sys, torch; from vidpred.train.export import load_exported; g, _ = load_exported(sys.argv[1]); "
            "assert 'deepspeed' not in sys.modules and 'ray' not in sys.modules, 'export load pulled in DS/Ray'; "
            "torch.save(g.state_dict(), sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(exported), str(tmp_path / "sd.pt")], check=True, timeout=300)
    import torch

    loaded, trained = torch.load(tmp_path / "sd.pt"), runs[layout]["g"]
    assert loaded.keys() == trained.keys()
    for name, w in trained.items():
        assert torch.allclose(loaded[name], w, atol=1e-6), name
