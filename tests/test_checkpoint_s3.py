"""Checkpoints in S3 (a real SeaweedFS server): every rank's shards and the generator land in the bucket,
only the last ``keep_checkpoints`` stay, ``vidpred export`` reads one by URI, and ``--resume`` takes the
run's URI."""

import re
import subprocess
import sys

import pytest

from conftest import TINY_RUN
from test_train_e2e import run_vidpred

pytestmark = pytest.mark.slow


def checkpoint_files(s3, bucket: str, prefix: str) -> dict[str, set[str]]:
    """{checkpoint dir name: file keys relative to it} under ``prefix``."""
    found: dict[str, set[str]] = {}
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rest = obj["Key"][len(prefix):]
            if rest.startswith("checkpoint_") and "/" in rest:
                name, _, path = rest.partition("/")
                found.setdefault(name, set()).add(path)
    return found


def test_checkpoints_in_s3_export_and_resume(cli_env, s3_server, tmp_path):
    bucket = s3_server.make_bucket("vidpred-ckpt")
    env = {**cli_env, **s3_server.env()}
    run = f"s3://{bucket}/runs/tiny"
    common = [*TINY_RUN, "--set", "train.val_every=1000", "--set", f"train.storage_path=s3://{bucket}/runs"]
    out = run_vidpred(["train", *common, "--set", "train.steps=4", "--set", "train.checkpoint_every=2"], env)
    uri = re.search(r"checkpoint: (\S+)", out).group(1)
    assert uri.startswith(f"{run}/checkpoint_"), uri

    stored = checkpoint_files(s3_server, bucket, "runs/tiny/")
    assert len(stored) == 2, sorted(stored)  # checkpoints at steps 2 and 4, keep_checkpoints = 2
    files = stored[uri.rsplit("/", 1)[1]]
    for net in ("g", "d"):
        for rank in (0, 1):
            assert f"{net}/state/zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" in files, sorted(files)
        assert f"{net}/state/mp_rank_00_model_states.pt" in files
    assert {"generator.pt", "meta.json"} <= files

    exported = tmp_path / "g.pt"
    subprocess.run([sys.executable, "-m", "vidpred", "export", uri, str(exported)], env=env, check=True,
                   capture_output=True, timeout=300)
    code = ("import sys; from vidpred.train.export import load_exported; g, cfg = load_exported(sys.argv[1]); "
            "assert cfg['train']['storage_path'].startswith('s3://'); print(sum(p.numel() for p in g.parameters()))")
    loaded = subprocess.run([sys.executable, "-c", code, str(exported)], env=env, check=True, capture_output=True,
                            text=True, timeout=300)
    assert int(loaded.stdout) > 100_000

    resumed = run_vidpred(["train", "--resume", run, "--set", "train.steps=6"], env)
    assert "resumed from step 4" in resumed and "done: 6 steps" in resumed, resumed[-3000:]
    assert len(checkpoint_files(s3_server, bucket, "runs/tiny/")) == 2
