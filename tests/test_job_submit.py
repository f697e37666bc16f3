"""``ray job submit --working-dir . -- vidpred train`` against a real local head on 127.0.0.1."""

import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

import pytest

from vidpred.net import free_port
from conftest import REPO, TINY_RUN
from raynodes import head_args, head_logs, start_node, stop_group, token_auth, wait_for_port

pytestmark = pytest.mark.slow
AGENT_DEADLINE_S = 600


@pytest.fixture
def ray_head(cli_env):
    """``ray start --head`` bound to 127.0.0.1; yields its :class:`Head`; stops it after.

    Token authentication on, as Ray 2.60 does by default: head and client share the token via the env.
    """
    cli_env.pop("RAY_ADDRESS", None)  # the head is started and addressed explicitly
    token_auth(cli_env)
    temp_dir = tempfile.mkdtemp(prefix="/tmp/rayh")  # short: Ray's socket paths must fit 107 bytes
    gcs, dash = free_port(), free_port()
    head = start_node(head_args(temp_dir, 2, gcs, dash), cli_env)
    try:
        wait_for_port(dash, head)
        yield Head(f"http://127.0.0.1:{dash}", temp_dir)
    finally:
        stop_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


class Head(NamedTuple):
    address: str   # the job API (dashboard) URL
    temp_dir: str  # its --temp-dir: its logs, shown when a test fails


def test_ray_job_submit_runs_the_training_job(ray_head, cli_env):
    cmd = ["ray", "job", "submit", "--address", ray_head.address, "--working-dir", ".", "--",
           "vidpred", "train", *TINY_RUN]
    # The dashboard port opens before the head's job agent has registered; until it has, the job API
    # answers "No available agent" after waiting 10 s itself. Under CI load the agent took over 4 minutes.
    deadline = time.monotonic() + AGENT_DEADLINE_S
    while True:
        proc = subprocess.run(cmd, cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=900)
        out = proc.stdout + proc.stderr
        if "No available agent to submit job" not in out or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert proc.returncode == 0, out[-6000:] + head_logs(ray_head.temp_dir)
    assert re.search(r"Job '\S+' succeeded", out), out[-3000:]
    assert "[vidpred] prediction:" in out

    job_id = re.search(r"Job '(\S+)' succeeded", out).group(1)
    # Asked from a fresh process: Ray caches the auth token per process, and this one may hold another.
    code = ("import sys; from ray.job_submission import JobSubmissionClient as C; "
            "print(C(sys.argv[1]).get_job_status(sys.argv[2]))")
    status = subprocess.run([sys.executable, "-c", code, ray_head.address, job_id], env=cli_env, capture_output=True,
                            text=True, timeout=60)
    assert status.stdout.strip() == "SUCCEEDED", status.stdout + status.stderr
