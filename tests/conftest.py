"""Shared fixtures. Tests use real components: real Ray, real DeepSpeed, real PyAV-encoded video."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]


# The files that take minutes, slowest first (seconds each took in a full run with -n 2, 2026-12-01). pytest-xdist
# hands whole files to its two processes in collection order (pyproject: --dist loadfile --no-loadscope-reorder);
# started first, the long files run beside the many short ones instead of last, one beside the other, while
# the other process sits idle. The multi-node files are spread so no two of them start together.
SLOW_FILES = (
    "test_elastic.py",          # 328 s: three Ray nodes, one lost, one joins
    "test_resume.py",           # 183 s
    "test_preemption.py",       # 252 s: three Ray nodes, one drained
    "test_tune_run.py",         # 140-175 s
    "test_faults.py",           # 166 s
    "test_checkpoint_s3.py",    # 155 s
    "test_multinode.py",
    "test_job_submit.py",
    "test_ema.py",
    "test_train_e2e.py",
    "test_zero_stages.py",
    "test_reshard.py",
)


def pytest_collection_modifyitems(config, items):
    """Slow files first (see SLOW_FILES), the rest in their usual order; a file's tests stay together."""
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))  # stable: the order inside a file holds


@pytest.fixture
def cli_env(tmp_path):
    """Environment for running ``vidpred`` in a subprocess: private cache, the venv's bin on PATH."""
    env = dict(os.environ)
    env["VIDPRED_CACHE"] = str(tmp_path / "cache")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    # A Ray of its own: plain ray.init() would join whatever local cluster started last on this machine.
    env["RAY_ADDRESS"] = "local"
    return env


# A quickstart small enough for a test: the default pipeline (Ray, 2 workers, DeepSpeed ZeRO-2),
# fewer and smaller synthetic clips, a handful of steps.
TINY_RUN = [
    "--set", "data.synth_clips=4", "--set", "data.synth_seconds=2", "--set", "data.synth_size=160x96",
    "--set", "data.batch_size=2", "--set", "train.steps=6", "--set", "train.checkpoint_every=3",
    "--set", "train.log_every=1", "--set", "train.name=tiny",
]

from s3server import s3_env, s3_server  # noqa: E402,F401 - fixtures: a real SeaweedFS S3 server (session-wide)
