"""Real Ray nodes for tests: ``ray start --block``, each in its own process group, bound to 127.0.0.1 with a
temp dir of its own; stopping the group stops that node only (``ray stop`` would stop every Ray on the
machine, other people's included)."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from vidpred.net import free_port


def node_args(temp_dir: str, cpus: int) -> list[str]:
    """``ray start`` arguments for a node on 127.0.0.1 with a temp dir of its own. Every port a node would
    otherwise take at a fixed default is a free one (the agent's HTTP port, 52365, is taken by any other Ray
    on the machine, a plain ``ray.init()`` of another test's ``vidpred train`` included: the head's job agent
    then fails to bind and ``ray job submit`` answers "No available agent" until it gives up)."""
    return ["--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0", f"--temp-dir={temp_dir}",
            f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"]


def head_args(temp_dir: str, cpus: int, gcs: int, dash: int) -> list[str]:
    """``ray start`` arguments for a head: GCS on ``gcs``, the dashboard (job API) on 127.0.0.1:``dash``, the
    client server on a free port (default 10001), then :func:`node_args`."""
    return ["--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
            f"--ray-client-server-port={free_port()}", *node_args(temp_dir, cpus)]


def token_auth(env: dict) -> None:
    """Token authentication on, as Ray 2.60 does by default: the nodes and their clients share a fresh token
    through ``env`` (never printed)."""
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(16)


def start_node(args: list[str], env: dict) -> subprocess.Popen:
    """``ray start --block ARGS`` in a new process group (see :func:`stop_group`)."""
    return subprocess.Popen(["ray", "start", "--block", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def head_logs(temp_dir: str, tail: int = 3000) -> str:
    """The end of a node's dashboard, agent and raylet logs: why a job could not be submitted or run."""
    parts = []
    for pattern in ("dashboard.log", "dashboard_agent*.log", "raylet.out"):
        for path in sorted(Path(temp_dir).glob(f"session_latest/logs/{pattern}")):
            parts.append(f"\n--- {path.name} ---\n" + path.read_text(errors="replace")[-tail:])
    return "".join(parts)


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"Ray did not open port {port} in {timeout:.0f} s")


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the node's group, SIGKILL what is left after a short grace. ``ray start --block`` never exited
    within 30 s of SIGTERM here (each teardown cost the full grace), and a test node has nothing to flush."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            time.sleep(2)  # Ray's own children leave the group a moment after the parent
        except subprocess.TimeoutExpired:
            continue


def show_logs(run: subprocess.Popen | None, dirs: list[str]) -> None:
    """After a failure: stop the run (its output is what the test read) and print the nodes' logs."""
    if run is not None and run.poll() is None:
        run.kill()
    sys.stderr.write("".join(map(head_logs, dirs)))


def tear_down(run: subprocess.Popen | None, nodes: list[subprocess.Popen], dirs: list[str]) -> None:
    """Kill the run if it still runs, stop the nodes (the last started first), remove their temp dirs."""
    if run is not None and run.poll() is None:
        run.kill()
    for node in reversed(nodes):
        if node.poll() is None:
            stop_group(node)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
