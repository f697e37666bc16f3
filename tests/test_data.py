"""The data path: timestamp resampling, resize/crop, clip windows, the Ray Data dataset, bad files skipped."""

import numpy as np
import pytest

from vidpred.config import DataConfig
from vidpred.data.clips import windows
from vidpred.data.decode import decode_frames
from vidpred.data.pipeline import ClipsFromVideo, video_clips
from vidpred.data.sources import DataError, list_videos

from videos import brightness_index, encode


def indices(path, fps):
    return [brightness_index(f) for f in decode_frames(str(path), fps, 16, 16)]


def test_resample_30_to_10_fps_takes_every_third_frame(tmp_path):
    path = encode(tmp_path / "a.mov", [k / 30 for k in range(30)])
    assert indices(path, 10) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]


def test_resample_29_97_fps_by_timestamps(tmp_path):
    path = encode(tmp_path / "ntsc.mov", [k * 1001 / 30000 for k in range(60)])
    got = indices(path, 10)
    # the latest frame shown at or before t = n / 10 s
    want = [int(np.floor(n / 10 * 30000 / 1001 + 1e-9)) for n in range(len(got))]
    assert got == want and len(got) == 20


def test_variable_frame_rate_holds_the_latest_frame(tmp_path):
    times = [0.0, 0.05, 0.5, 0.55, 0.6, 1.0]   # a stall between 0.05 s and 0.5 s
    path = encode(tmp_path / "vfr.mov", times)
    assert indices(path, 10) == [0, 1, 1, 1, 1, 2, 4, 4, 4, 4, 5]


def test_resize_keeps_aspect_then_centre_crops(tmp_path):
    path = tmp_path / "wide.mov"
    encode(path, [0.0, 0.1], height=48, width=96)
    frame = next(decode_frames(str(path), 10, 32, 32))
    assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8


def test_windows_length_and_stride():
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(10)]
    got = [w[:, 0, 0, 0].tolist() for w in windows(frames, length=4, stride=3)]
    assert got == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]


def test_corrupt_file_is_skipped_not_fatal(tmp_path, caplog):
    bad = tmp_path / "bad.mov"
    bad.write_bytes(b"\x00not a video at all" * 100)
    fn = ClipsFromVideo(DataConfig(height=16, width=16))
    assert fn({"uri": str(bad)}) == []
    assert "skipping video" in caplog.text and "bad.mov" in caplog.text


def test_listing_is_split_aware_and_empty_split_fails(tmp_path):
    encode(tmp_path / "videos" / "train" / "b.mov", [0.0, 0.1])
    encode(tmp_path / "videos" / "train" / "a.mp4", [0.0, 0.1], container="mp4")
    (tmp_path / "videos" / "train" / "notes.txt").write_text("x")
    assert [v.name for v in list_videos(str(tmp_path), "train")] == ["a.mp4", "b.mov"]
    assert list_videos(str(tmp_path), "val") == []
    from vidpred.data.pipeline import videos_or_fail

    with pytest.raises(DataError, match="videos/val"):
        videos_or_fail(DataConfig(), str(tmp_path), "val")


@pytest.mark.slow
def test_ray_dataset_streams_clips_from_every_healthy_file(tmp_path):
    import ray
    import torch

    from vidpred.data.pipeline import build_dataset

    for name in ("a", "b", "c"):
        encode(tmp_path / "videos" / "train" / f"{name}.mov", [k / 30 for k in range(48)])
    (tmp_path / "videos" / "train" / "broken.mov").write_bytes(b"garbage" * 50)
    cfg = DataConfig(uri=str(tmp_path), height=16, width=16, context=2, future=2, stride=2)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        ds = build_dataset(cfg, str(tmp_path), "train")
        batches = list(ds.iter_torch_batches(batch_size=4, dtypes=torch.uint8))
    finally:
        ray.shutdown()
    clips = torch.cat([b["frames"] for b in batches])
    # each healthy 1.6 s file: 16 frames at 10 fps → windows of 4 every 2 frames → 7 clips
    assert clips.shape == (3 * 7, 4, 16, 16, 3) and clips.dtype == torch.uint8
    assert len(list(video_clips(str(tmp_path / "videos" / "train" / "a.mov"), cfg))) == 7
