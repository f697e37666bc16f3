"""An elastic run (train.min_workers = 1, train.num_workers = 2) on a real Ray cluster of a head and two worker
nodes on 127.0.0.1: a worker node is lost mid-run (its whole process group SIGKILLed: a crash, no notice),
training goes on with 1 worker from the latest checkpoint, resharded, Adam's state included; a new node joins
and the run grows back to 2 workers, resharded again; it ends at train.steps.

CPUs: the head 1 (Ray Data's whole-CPU decode tasks run there), each worker node 2, and a worker takes 1.5:
one worker per worker node, none on the head, so losing a node loses exactly one worker. Adam's step count is
what proves the optimizer state came through: a restore that restarted Adam would start it at 0, and the
final checkpoint's count would fall short of train.steps by the steps before the resize.
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from vidpred.net import free_port
from conftest import TINY_RUN
from raynodes import head_args, node_args, show_logs, start_node, tear_down, token_auth, wait_for_port
from test_multinode import alive_nodes
from test_preemption import Lines

pytestmark = pytest.mark.slow
HEAD_CPUS, NODE_CPUS, WORKER_CPUS = 1, 2, 1.5
STEPS, EVERY = 60, 4  # checkpoints every 4 steps: a restart loses at most 3
START_TIMEOUT_S = 20


def kill_node(node: subprocess.Popen) -> None:
    """The node is lost at once: its raylet and every process of it, no drain."""
    os.killpg(node.pid, signal.SIGKILL)
    node.wait(timeout=30)


@pytest.mark.timeout(1500)
def test_elastic_run_shrinks_to_one_worker_and_grows_back(cli_env, tmp_path):
    cli_env.pop("RAY_ADDRESS", None)
    token_auth(cli_env)
    # After a node is lost Ray Train first tries the old size again (the dead node's CPUs still look free until
    # Ray marks it dead) and waits this long for its placement group before it tries the size there is room
    # for (default 60 s; the placement group of a size that fits is ready in seconds)
    cli_env["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = str(START_TIMEOUT_S)
    dirs = [tempfile.mkdtemp(prefix="/tmp/rayh"), *(tempfile.mkdtemp(prefix="/tmp/rayn") for _ in range(3))]
    gcs, dash = free_port(), free_port()
    nodes, run = [], None
    started = time.monotonic()
    try:
        nodes.append(start_node(head_args(dirs[0], HEAD_CPUS, gcs, dash), cli_env))
        wait_for_port(gcs, nodes[0])
        address = f"127.0.0.1:{gcs}"
        for d in dirs[1:3]:
            nodes.append(start_node([f"--address={address}", *node_args(d, NODE_CPUS)], cli_env))
        assert len(alive_nodes(address, cli_env, want=3)) == 3

        storage = tmp_path / "runs"
        args = ["train", *TINY_RUN, "--set", "train.num_workers=2", "--set", "train.min_workers=1",
                "--set", f"train.cpus_per_worker={WORKER_CPUS}", "--set", "train.elastic_resize_interval_s=5",
                "--set", f"train.steps={STEPS}", "--set", f"train.checkpoint_every={EVERY}",
                "--set", "train.log_every=2", "--set", "train.val_every=1000", "--set", "train.max_failures=3",
                "--set", f"train.storage_path={storage}"]
        run = subprocess.Popen([sys.executable, "-m", "vidpred", *args], env={**cli_env, "RAY_ADDRESS": address},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        out = Lines(run, tmp_path / "run.out")
        out.wait_for(r"elastic run at 2 of 1\.\.2 workers: global batch 4 kept", timeout=600)
        out.wait_for(r"step (?:1[0-9]|[2-9]\d)/%d" % STEPS, timeout=600)  # past two checkpoints
        kill_node(nodes[2])
        lost_at = time.monotonic()
        shrunk = out.wait_for(r"elastic run at 1 of 1\.\.2 workers: global batch 4 kept: 4 clips per worker per "
                              r"step in 2 micro-batches of 2", timeout=600)
        resumed = out.wait_for(r"resumed from step (\d+) \(.*resharded from 2 workers; Adam at step (\d+) for G, "
                               r"(\d+) for D\)", timeout=300)
        shrink_s = time.monotonic() - lost_at
        at, g_adam, d_adam = map(int, resumed.groups())
        assert at >= 2 * EVERY and at % EVERY == 0 and g_adam == d_adam == at, resumed.group(0)  # Adam came through
        # one worker trains on past a checkpoint of its own, so the run that grows back reshards from 1 worker
        # (a step number the 2 workers logged before the loss must not count: only lines after the resume do)
        out.wait_for(r"step %d/%d" % (at + EVERY + 2, STEPS), timeout=300, since=out.after)

        nodes.append(start_node([f"--address={address}", *node_args(dirs[3], NODE_CPUS)], cli_env))  # a new node
        joined_at = time.monotonic()
        regrown = out.wait_for(r"resumed from step (\d+) \(.*resharded from 1 workers; Adam at step (\d+) for G, "
                               r"(\d+) for D\)", timeout=600)
        grow_s = time.monotonic() - joined_at
        again, g_again, d_again = map(int, regrown.groups())
        assert again > at and g_again == d_again == again, regrown.group(0)
        out.wait_for(r"done: %d steps" % STEPS, timeout=900)
        assert run.wait(timeout=120) == 0, out.text()[-6000:]
        text = out.text()
        assert len(re.findall(r"elastic run at 2 of 1\.\.2 workers", text)) >= 2, text[-6000:]  # grew back to 2

        final = Path(re.search(r"checkpoint: (\S+)", text).group(1))
        meta = json.loads((final / "meta.json").read_text())
        assert (meta["step"], meta["world"]) == (STEPS, 2), meta
        whole = torch.load(final / "reshard.pt", weights_only=True)
        # every step since step 0 counted by Adam: none restarted it (fp32: no update is skipped for overflow)
        assert whole["g"]["step"] == whole["d"]["step"] == STEPS
        losses = [float(v) for v in re.findall(r"step \d+/%d rec=([0-9.]+)" % STEPS, text)]
        assert losses and all(v == v for v in losses)  # the run logged finite losses all along
        print(f"\nelastic: lost node → 1 worker resumed in {shrink_s:.0f} s; new node → 2 workers resumed in "
              f"{grow_s:.0f} s; whole test {time.monotonic() - started:.0f} s")
        del shrunk
    except BaseException:
        show_logs(run, dirs)
        raise
    finally:
        tear_down(run, nodes, dirs)
