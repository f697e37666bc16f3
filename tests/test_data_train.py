"""Done-when of the data plane: ``vidpred train`` runs from a SeaweedFS bucket holding healthy videos and every
kind of broken file, trains on every healthy one and reports every broken one (console, data_summary.json,
metrics); a broken val file is reported the same way and validation runs on the healthy val file."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_RUN
from test_data_bad import add_val, mixed_tree

pytestmark = pytest.mark.slow


def test_train_from_s3_with_every_kind_of_broken_file(s3_server, cli_env, tmp_path):
    expected = mixed_tree(tmp_path / "tree")
    del expected["val"]                                   # no longer missing:
    expected.update(add_val(tmp_path / "tree"))           # one healthy val video, one broken
    uri = s3_server.upload_tree(tmp_path / "tree", s3_server.make_bucket("train-mixed"), "bdd100k")
    env = {**cli_env, **s3_server.env()}
    args = [word for flag, value in zip(TINY_RUN[::2], TINY_RUN[1::2]) if not value.startswith("data.synth")
            for word in (flag, value)]
    proc = subprocess.run([sys.executable, "-m", "vidpred", "train", *args, "--set", f"data.uri={uri}",
                           "--set", "train.steps=4", "--set", "train.checkpoint_every=2"],
                          env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]

    assert f"[vidpred] data train: 3 usable videos (~31 clips), {len(expected) - 1} skipped" in out
    assert re.search(r"\[vidpred\] data val: 1 usable videos \(~\d+ clips\), 1 skipped \(1 not a video\)", out), out
    for name, reason in expected.items():
        assert re.search(rf"skipped {re.escape(uri)}/\S*{re.escape(name)}: {reason}", out), (name, out[-4000:])

    summary_path = Path(re.search(r"data summary: (\S+)", out).group(1))
    summary = json.loads(summary_path.read_text())
    assert {row["file"].rsplit("/", 1)[-1]: row["reason"] for row in summary["skipped"]} == expected
    assert {row["split"] for row in summary["skipped"] if row["file"].endswith("val_garbage.mov")} == {"val"}
    assert sorted(v["uri"].rsplit("/", 1)[-1] for v in summary["videos"]) == ["bikes.mp4", "good_a.mov",
                                                                              "good_b.mp4", "val_good.mov"]
    done = re.search(r"\[vidpred\] done: .*", out).group(0)   # the last report's metrics
    assert re.search(rf"data_skipped={len(expected)}(\.0+)?\b", done), done
    assert re.search(r"data_videos=4(\.0+)?\b", done), done            # train 3 + val 1
    assert re.search(r"\bval_psnr=\d", done), done                      # validated on the healthy val video
