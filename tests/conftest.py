"""Shared fixtures. Tests use real components: real Ray, real DeepSpeed, real PyAV-encoded video."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]


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
