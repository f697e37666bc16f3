"""The prepared-clip cache: ``prepare`` is a Ray Data job that decodes each usable video once, is restartable,
and gives exactly the clips the raw videos give; training reads a prepared URI with the same config."""

import json

import numpy as np
import pytest

from vidpred.config import DataConfig
from vidpred.data.pipeline import build_dataset, video_clips
from vidpred.data.prepare import prepare
from vidpred.data.prepared import MANIFEST, target_uri
from vidpred.data.report import survey
from vidpred.data.sources import DataError
from vidpred.storage import read_bytes

from videos import encode, make_broken_videos, packaged_video, seconds

pytestmark = pytest.mark.slow
CFG = DataConfig(height=16, width=16, context=2, future=2, stride=2)


@pytest.fixture(scope="module")
def ray_with_s3(s3_server):
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR",
             runtime_env={"env_vars": s3_server.env()})  # the workers reach S3 as the driver does
    yield ray
    ray.shutdown()


def small_tree(root):
    encode(root / "videos" / "train" / "a.mov", seconds(1.6))
    (root / "videos" / "train" / "bikes.mp4").write_bytes(packaged_video("bikes.mp4").read_bytes())
    encode(root / "videos" / "val" / "v.mov", seconds(1.2))
    broken = make_broken_videos(root / "videos" / "train")
    return broken


def same_clips(raw_uri, prepared_uri, cfg):
    raw, ready = list(video_clips(raw_uri, cfg)), list(video_clips(prepared_uri, cfg))
    return len(raw) == len(ready) > 0 and all(np.array_equal(a, b) for a, b in zip(raw, ready))


def test_prepare_locally_restarts_and_matches_the_raw_clips(tmp_path, ray_with_s3, capsys):
    src, dst = tmp_path / "raw", tmp_path / "prepared"
    broken = small_tree(src)
    manifest = prepare(CFG, str(src), str(dst))
    assert sorted(e["file"] for e in manifest["splits"]["train"]) == ["videos/train/a.mov.parquet",
                                                                      "videos/train/bikes.mp4.parquet"]
    assert manifest["splits"]["val"][0]["frames"] == 12
    assert {s["file"].rsplit("/", 1)[-1] for s in manifest["skipped"]} == set(broken)
    for name in ("a.mov", "bikes.mp4"):
        assert same_clips(str(src / "videos" / "train" / name), target_uri(str(dst), "train", name), CFG)
    assert json.loads((dst / MANIFEST).read_text()) == manifest

    # restart: one file deleted, one left half-written by a killed writer
    bikes = dst / "videos" / "train" / "bikes.mp4.parquet"
    bikes.write_bytes(bikes.read_bytes()[:1000])
    (dst / "videos" / "val" / "v.mov.parquet").unlink()
    capsys.readouterr()
    again = prepare(CFG, str(src), str(dst))
    out = capsys.readouterr().out
    assert "3 usable videos" in out and "(1 already prepared)" in out and out.count("[vidpred] prepared ") == 2
    assert again == manifest

    # a prepared tree is surveyed from its manifest; other clip lengths work, another size is refused
    other = DataConfig(height=16, width=16, context=3, future=1, stride=5)
    assert [v.clips for v in survey(other, str(dst)).usable("train")] == [3, 20]
    with pytest.raises(DataError, match="prepared at fps=10 16x16, but the config asks for fps=10 32x32"):
        survey(DataConfig(height=32, width=32), str(dst))


def test_prepare_from_s3_to_s3_then_stream_it(s3_server, s3_env, tmp_path, ray_with_s3):
    import torch

    small_tree(tmp_path)
    bucket = s3_env.make_bucket("prepare")
    src = s3_env.upload_tree(tmp_path, bucket, "raw")
    dst = f"s3://{bucket}/prepared"
    manifest = prepare(CFG, src, dst)
    assert json.loads(read_bytes(f"{dst}/{MANIFEST}")) == manifest
    usable = survey(CFG, dst).require_clips("train")
    assert [v.uri for v in usable] == [f"{dst}/videos/train/a.mov.parquet", f"{dst}/videos/train/bikes.mp4.parquet"]
    batches = build_dataset(CFG, dst, "train", seed=0, uris=[v.uri for v in usable]).iter_torch_batches(
        batch_size=8, dtypes=torch.uint8)
    clips = torch.cat([b["frames"] for b in batches])
    raw = sum(len(list(video_clips(f"{src}/videos/train/{n}", CFG))) for n in ("a.mov", "bikes.mp4"))
    assert clips.shape == (raw, 4, 16, 16, 3)
