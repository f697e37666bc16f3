"""A Ray that vidpred starts on this machine listens on 127.0.0.1 only: a plain local ``ray.init()`` puts
its node on the machine's network address and opens most of its ports on every interface."""

import json
import subprocess
import sys

LOCAL_START = r"""
import json, psutil, ray
from ray._private import ray_constants
from vidpred.train import launch

launch.init_ray()

@ray.remote(num_cpus=0)
def node_ip():
    return ray.util.get_node_ip_address()

listening = sorted({f"{c.laddr.ip}:{c.laddr.port}" for p in psutil.Process().children(recursive=True)
                    for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN})
print(json.dumps({"nodes": [n["NodeManagerAddress"] for n in ray.nodes()], "task": ray.get(node_ip.remote()),
                  "gcs": ray.get_runtime_context().gcs_address, "listening": listening,
                  "constant_after": ray_constants.ENABLE_RAY_CLUSTER}))
ray.shutdown()
"""


def test_a_local_ray_listens_on_loopback_only(cli_env):
    run = subprocess.run([sys.executable, "-c", LOCAL_START], env=cli_env, capture_output=True, text=True,
                         timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["nodes"] == ["127.0.0.1"] and seen["task"] == "127.0.0.1", seen
    assert seen["gcs"].startswith("127.0.0.1:"), seen
    # GCS, raylet, object manager, dashboard, agents, workers: many ports, every one on loopback
    assert len(seen["listening"]) >= 5, seen
    assert all(a.rsplit(":", 1)[0] in ("127.0.0.1", "::ffff:127.0.0.1") for a in seen["listening"]), seen
    # switched off for the start alone: a later `ray start --address` from this process would still run
    assert seen["constant_after"] is True, seen
