"""``ray job submit --working-dir . -- vidpred train`` against a real local head on 127.0.0.1."""

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import REPO, TINY_RUN

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(cli_env):
    """``ray start --head`` bound to 127.0.0.1; yields the dashboard (job API) address; stops it after.

    Token authentication on, as Ray 2.60 does by default: head and client share the token via the env.
    """
    cli_env.pop("RAY_ADDRESS", None)  # the head is started and addressed explicitly
    cli_env["RAY_AUTH_MODE"] = "token"
    cli_env["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    temp_dir = tempfile.mkdtemp(prefix="/tmp/rayh")  # short: Ray's socket paths must fit 107 bytes
    gcs, dash = free_port(), free_port()
    start = ["ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=2", "--num-gpus=0",
             f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    # --block in its own process group: stopping the group stops this head only (`ray stop` would stop
    # every Ray on the machine, other people's included).
    head = subprocess.Popen(start, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for_port(dash, head)
        yield f"http://127.0.0.1:{dash}"
    finally:
        stop_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"Ray dashboard did not open port {port} in {timeout:.0f} s")


def stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            time.sleep(2)  # Ray's own children leave the group a moment after the parent
        except subprocess.TimeoutExpired:
            continue


def test_ray_job_submit_runs_the_training_job(ray_head, cli_env):
    cmd = ["ray", "job", "submit", "--address", ray_head, "--working-dir", ".", "--",
           "vidpred", "train", *TINY_RUN]
    for _ in range(20):  # the dashboard port opens before its job agent is ready to take a job
        proc = subprocess.run(cmd, cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=900)
        out = proc.stdout + proc.stderr
        if "No available agent to submit job" not in out:
            break
        time.sleep(3)
    assert proc.returncode == 0, out[-6000:]
    assert re.search(r"Job '\S+' succeeded", out), out[-3000:]
    assert "[vidpred] prediction:" in out

    job_id = re.search(r"Job '(\S+)' succeeded", out).group(1)
    # Asked from a fresh process: Ray caches the auth token per process, and this one may hold another.
    code = ("import sys; from ray.job_submission import JobSubmissionClient as C; "
            "print(C(sys.argv[1]).get_job_status(sys.argv[2]))")
    status = subprocess.run([sys.executable, "-c", code, ray_head, job_id], env=cli_env, capture_output=True,
                            text=True, timeout=60)
    assert status.stdout.strip() == "SUCCEEDED", status.stdout + status.stderr
