"""``vidpred train`` across two nodes of a real Ray cluster: a head and a second node (its own raylet, object
store and agents), both on 127.0.0.1, the workers placed with ``train.placement_strategy=STRICT_SPREAD``.

CPUs: the head has 2 (logical), the second node 1. Each worker takes ``train.cpus_per_worker`` = 0.5 and
STRICT_SPREAD puts one on each node, which leaves the head 1.5 CPUs, enough for Ray Data's whole-CPU
decode tasks. Two 1-CPU nodes would leave 0.5 on each and no decode task could ever start.
"""

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from vidpred.net import free_port
from conftest import TINY_RUN
from raynodes import head_args, head_logs, node_args, start_node, stop_group, token_auth, wait_for_port

pytestmark = pytest.mark.slow

HEAD_CPUS, NODE_CPUS = 2, 1

# Waits in a fresh process (Ray caches the auth token per process) until the cluster has `want` alive
# nodes, then prints {node id: CPUs} of the alive ones.
# The GCS port opens before the head's raylet registers: a driver that connects in between fails ("No node
# info found matching attributes"; seen on a loaded 2-core machine), so the connection is retried too.
ALIVE_NODES = """
import json, sys, time, ray
want, deadline = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while True:
    try:
        ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
        break
    except ConnectionError:
        ray.shutdown()
        if time.monotonic() > deadline:
            raise
        time.sleep(2)
while True:
    alive = {n["NodeID"]: n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]}
    if len(alive) >= want or time.monotonic() > deadline:
        break
    time.sleep(1)
print(json.dumps(alive))
"""


@pytest.fixture
def two_nodes(cli_env):
    """A head and a second node on 127.0.0.1, token auth on; yields (GCS address, temp dirs); stops both."""
    cli_env.pop("RAY_ADDRESS", None)
    token_auth(cli_env)
    dirs = [tempfile.mkdtemp(prefix="/tmp/rayh"), tempfile.mkdtemp(prefix="/tmp/rayn")]  # short: socket paths
    gcs, dash = free_port(), free_port()
    nodes = []
    try:
        nodes.append(start_node(head_args(dirs[0], HEAD_CPUS, gcs, dash), cli_env))
        wait_for_port(gcs, nodes[0])
        nodes.append(start_node([f"--address=127.0.0.1:{gcs}", *node_args(dirs[1], NODE_CPUS)], cli_env))
        yield f"127.0.0.1:{gcs}", dirs
    finally:
        for node in reversed(nodes):  # the second node first: it would otherwise wait for the lost head
            stop_group(node)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def alive_nodes(address: str, env: dict, want: int, timeout: float = 180) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", ALIVE_NODES, address, str(want), str(timeout)], env=env,
                          capture_output=True, text=True, timeout=timeout + 120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_workers_train_on_two_nodes(two_nodes, cli_env):
    address, dirs = two_nodes
    nodes = alive_nodes(address, cli_env, want=2)
    assert sorted(nodes.values()) == [NODE_CPUS, HEAD_CPUS], nodes

    env = {**cli_env, "RAY_ADDRESS": address}
    args = ["train", *TINY_RUN, "--set", "train.num_workers=2", "--set", "train.cpus_per_worker=0.5",
            "--set", "train.placement_strategy=STRICT_SPREAD"]
    proc = subprocess.run([sys.executable, "-m", "vidpred", *args], env=env, capture_output=True, text=True,
                          timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-6000:]}" + "".join(map(head_logs, dirs))

    # one line per worker, from the worker itself: its rank and the Ray node it runs on
    placed = dict(re.findall(r"worker rank (\d+)/2 on node ([0-9a-f]+)", out))
    assert sorted(placed) == ["0", "1"], out[-6000:]
    assert set(placed.values()) == set(nodes), (placed, nodes)  # two different nodes: both of the cluster's

    checkpoint = Path(re.search(r"checkpoint: (\S+)", out).group(1))
    assert (checkpoint / "generator.pt").is_file()
    assert json.loads((checkpoint / "meta.json").read_text())["step"] == 6
    # each rank's ZeRO shard: the worker on the second node wrote its part of the same checkpoint
    shards = sorted(p.name for p in (checkpoint / "g" / "state").iterdir())
    assert any("zero_pp_rank_0" in s for s in shards) and any("zero_pp_rank_1" in s for s in shards), shards
