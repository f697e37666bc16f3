"""A preemption notice, the way Kubernetes gives one: SIGTERM to a worker node's ``ray start --block`` (Ray 2.60
then marks the node as draining for preemption for ``RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S`` before it stops
its processes). The run must write a checkpoint at the step of the notice before the node goes, and once a
node is back it resumes from that step and ends where it should.

Two nodes on 127.0.0.1 as in tests/test_multinode.py (head 2 CPUs, second node 1), 2 workers STRICT_SPREAD so
rank 1 is on the second node; that node's ``ray start`` alone gets the SIGTERM (not its process group: the
raylet would die at once, which is a crash, not a notice)."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from vidpred.net import free_port
from conftest import TINY_RUN
from raynodes import head_args, node_args, show_logs, start_node, tear_down, token_auth, wait_for_port
from test_multinode import HEAD_CPUS, NODE_CPUS, alive_nodes

pytestmark = pytest.mark.slow
STEPS, DRAIN_S = 100, 15  # the node goes ~15 s after the notice: too soon for the first attempt to end the run


class Lines:
    """The run's output, read in a thread; :meth:`wait_for` blocks until a line matches."""

    def __init__(self, proc: subprocess.Popen, copy: Path):
        self.copy = copy.open("w", buffering=1)  # the run's output as it comes, for a failure's post-mortem
        self.lines: list[str] = []
        self.ended = False
        self.after = 0
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc):
        for line in proc.stdout:
            self.copy.write(line)
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.ended = True  # the run's output is over: nothing more will match
            self.cond.notify_all()

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> re.Match:
        """The first line from index ``since`` on that matches; :attr:`after` is then the index past it, so a
        later wait can skip what came before (a step number logged before a restart matches a pattern meant
        for the steps after it)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(since, len(self.lines)):
                    if m := re.search(pattern, self.lines[i]):
                        self.after = i + 1
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    raise AssertionError(f"no line matching {pattern!r} (waited up to {timeout:.0f} s):\n"
                                         + "\n".join(self.lines)[-8000:])
                self.cond.wait(timeout=left)

    def text(self) -> str:
        with self.cond:
            return "\n".join(self.lines)


@pytest.mark.timeout(1800)
def test_sigterm_to_a_workers_node_checkpoints_that_step_and_the_run_resumes_there(cli_env, tmp_path):
    cli_env.pop("RAY_ADDRESS", None)
    token_auth(cli_env)
    node_env = {**cli_env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": str(DRAIN_S)}
    dirs = [tempfile.mkdtemp(prefix="/tmp/rayh"), tempfile.mkdtemp(prefix="/tmp/rayn"),
            tempfile.mkdtemp(prefix="/tmp/rayn")]
    gcs, dash = free_port(), free_port()
    nodes, run = [], None
    try:
        nodes.append(start_node(head_args(dirs[0], HEAD_CPUS, gcs, dash), cli_env))
        wait_for_port(gcs, nodes[0])
        address = f"127.0.0.1:{gcs}"
        nodes.append(start_node([f"--address={address}", *node_args(dirs[1], NODE_CPUS)], node_env))
        first = alive_nodes(address, cli_env, want=2)
        assert sorted(first.values()) == [NODE_CPUS, HEAD_CPUS], first

        storage = tmp_path / "runs"
        args = ["train", *TINY_RUN, "--set", "train.num_workers=2", "--set", "train.cpus_per_worker=0.5",
                "--set", "train.placement_strategy=STRICT_SPREAD", "--set", f"train.steps={STEPS}",
                "--set", "train.log_every=2", "--set", "train.checkpoint_every=1000", "--set", "train.val_every=1000",
                "--set", "train.max_failures=0", "--set", f"train.storage_path={storage}"]
        run = subprocess.Popen([sys.executable, "-m", "vidpred", *args], env={**cli_env, "RAY_ADDRESS": address},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        out = Lines(run, tmp_path / "run.out")
        out.wait_for(r"step (?:[6-9]|\d\d)/%d" % STEPS, timeout=600)
        os.kill(nodes[1].pid, signal.SIGTERM)   # the notice: `ray start` drains its node, then stops it
        notice = out.wait_for(r"step (\d+): preemption notice for node", timeout=DRAIN_S + 30)
        noticed_at = int(notice.group(1))
        nodes[1].wait(timeout=DRAIN_S + 60)      # the drained node has gone
        nodes.append(start_node([f"--address={address}", *node_args(dirs[2], NODE_CPUS)], node_env))  # a new one
        out.wait_for(r"done: %d steps" % STEPS, timeout=900)
        assert run.wait(timeout=120) == 0, out.text()[-6000:]
        text = out.text()

        # the notice's checkpoint was written and the restarted workers began there, not at step 0
        resumed = re.search(r"resumed from step (\d+)", text)
        assert resumed and int(resumed.group(1)) == noticed_at, text[-6000:]
        final = Path(re.search(r"checkpoint: (\S+)", text).group(1))
        assert json.loads((final / "meta.json").read_text())["step"] == STEPS
        steps_seen = [int(s) for s in re.findall(r"step (\d+)/%d" % STEPS, text)]
        assert max(steps_seen) == STEPS and noticed_at < STEPS, steps_seen
    except BaseException:
        show_logs(run, dirs)
        raise
    finally:
        tear_down(run, nodes, dirs)
