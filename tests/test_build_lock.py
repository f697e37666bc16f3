"""A DeepSpeed op build killed midway leaves torch's ``lock`` file in the op's build directory; every later
process would wait on it forever (the engines' start hung, silently). ``engines.build_comm_op`` builds the
op under an OS lock, so a torch lock it finds is stale: it removes it and builds. The build is real (a
private TORCH_EXTENSIONS_DIR, DeepSpeed's own JIT compile), so this takes about a minute."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

# In a fresh process: plain DeepSpeed hangs here, so a hang must cost the test a timeout, not the worker.
BUILD = """
import sys, torch.utils.cpp_extension as ext
from pathlib import Path
build_dir = Path(ext._get_build_directory("deepspeed_shm_comm", verbose=False))
(build_dir / "lock").touch()  # what a build killed midway leaves
from vidpred.train.engines import build_comm_op
print("removed", [str(p) for p in build_comm_op()])
print("lock left:", (build_dir / "lock").exists())
print("built:", any(build_dir.glob("*.so")))
"""


def test_a_lock_left_by_an_interrupted_build_is_removed_and_the_op_built(tmp_path):
    env = {"TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), "PATH": f"{sys.prefix}/bin:/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", BUILD], env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert f"removed ['{tmp_path / 'ext' / 'deepspeed_shm_comm' / 'lock'}']" in out, out[-4000:]
    assert "removed a DeepSpeed build lock an interrupted build left" in out, out[-4000:]
    assert "lock left: False" in out and "built: True" in out, out[-4000:]
