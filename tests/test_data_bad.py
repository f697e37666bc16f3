"""Bad input survived and reported: every kind of broken file is skipped with its reason, counted and listed;
healthy files are all used; only a dataset with no usable clip stops the run."""

import json

import pytest

from vidpred.config import DataConfig
from vidpred.data.pipeline import ClipsFromVideo, video_clips
from vidpred.data.probe import Reason
from vidpred.data.report import DataSummary, survey, training_summary
from vidpred.data.sources import DataError, check_root

from videos import encode, make_broken_videos, packaged_video, seconds

CFG = DataConfig(height=16, width=16, context=2, future=2, stride=2)


def mixed_tree(root):
    """Healthy videos (hand-made and real footage), every kind of broken one, info JSONs, no val folder."""
    train = root / "videos" / "train"
    expected = make_broken_videos(train)
    encode(train / "good_a.mov", seconds(1.6))
    encode(train / "good_b.mp4", seconds(2.0), container="mp4")
    (train / "bikes.mp4").write_bytes(packaged_video("bikes.mp4").read_bytes())
    info = root / "info" / "train"
    info.mkdir(parents=True)
    (info / "good_a.json").write_text(json.dumps({"gps": [{"latitude": 37.7, "longitude": -122.4}]}))
    (info / "good_b.json").write_text('{"gps": [{"latitude": 37.7,')           # cut short
    (info / "bikes.json").write_text("[1, 2, 3]")                               # not an object
    expected.update({"good_b.json": "malformed info JSON", "bikes.json": "malformed info JSON",
                     "val": "missing split folder"})
    return expected


def add_val(root, good: bool = True):
    """A val split holding a broken file (and a healthy one when ``good``); returns the skips it adds."""
    val = root / "videos" / "val"
    val.mkdir(parents=True)
    (val / "val_garbage.mov").write_bytes(b"not a video at all" * 100)
    if good:
        encode(val / "val_good.mov", seconds(1.6))
    return {"val_garbage.mov": "not a video"}


class Recorder:
    """Stands in for the SkipLog actor handle: ``log.add.remote(skip)``."""

    def __init__(self):
        self.skips = []
        self.add = self
        self.remote = self.skips.append


def test_every_kind_of_bad_input_is_skipped_with_its_reason(tmp_path):
    expected = mixed_tree(tmp_path)
    summary = survey(CFG, str(tmp_path), splits=("train",))

    got = {s.uri.rsplit("/", 1)[-1]: str(s.reason) for s in summary.skipped}
    assert got == expected
    assert sorted(v.uri.rsplit("/", 1)[-1] for v in summary.usable("train")) == ["bikes.mp4", "good_a.mov",
                                                                                  "good_b.mp4"]
    for video in summary.videos:  # the estimate the probe makes is what decoding gives
        assert video.clips == len(list(video_clips(video.uri, CFG))), video.uri

    counts = summary.counts()
    assert counts["not a video"] == 3 and counts["truncated"] == 2 and counts["malformed info JSON"] == 2
    assert sum(counts.values()) == len(expected) == summary.metrics()["data_skipped"]
    assert summary.metrics()["data_videos"] == 3 and summary.metrics()["data_skipped_truncated"] == 2
    table = summary.skip_table()
    assert all(name in table for name in expected) and "audio only" in table
    saved = json.loads(summary.to_json())
    assert {row["file"].rsplit("/", 1)[-1] for row in saved["skipped"]} == set(expected)
    summary.write_json(str(tmp_path / "account.json"), buffer=100)   # written in many pieces
    assert saved == summary.to_dict() == json.loads((tmp_path / "account.json").read_text())


def test_training_summary_prints_the_account(tmp_path):
    expected = mixed_tree(tmp_path)
    lines = []
    summary = training_summary(CFG, str(tmp_path), echo=lines.append)
    assert lines[0].startswith("[vidpred] data train: 3 usable videos") and f"{len(expected) - 1} skipped" in lines[0]
    assert lines[1] == "[vidpred] data val: 0 usable videos (~0 clips), 1 skipped (1 missing split folder)"
    assert "WARNING: no usable clip under" in lines[2] and "training without validation" in lines[2]
    assert any("random_bytes.mov: not a video" in line for line in lines)
    assert len(summary.skipped) == len(expected)


def test_val_split_is_probed_and_its_bad_files_listed(tmp_path):
    """Val is surveyed like train: its broken file is counted, listed with its reason and split, and kept out of
    the usable val videos (the ones validation is built from)."""
    mixed_tree(tmp_path)
    add_val(tmp_path)
    lines = []
    summary = training_summary(CFG, str(tmp_path), echo=lines.append)
    assert lines[1] == "[vidpred] data val: 1 usable videos (~7 clips), 1 skipped (1 not a video)"
    assert not any("WARNING" in line for line in lines)
    assert any(f"skipped {tmp_path}/videos/val/val_garbage.mov: not a video" in line for line in lines)
    assert [v.uri.rsplit("/", 1)[-1] for v in summary.usable("val")] == ["val_good.mov"]
    rows = {row["file"].rsplit("/", 1)[-1]: row for row in json.loads(summary.to_json())["skipped"]}
    assert rows["val_garbage.mov"]["split"] == "val" and rows["val_garbage.mov"]["reason"] == "not a video"
    assert rows["random_bytes.mov"]["split"] == "train" and rows["good_b.json"]["split"] == "train"


def test_val_without_a_usable_clip_warns_and_does_not_stop_the_run(tmp_path):
    mixed_tree(tmp_path)
    add_val(tmp_path, good=False)
    lines = []
    summary = training_summary(CFG, str(tmp_path), echo=lines.append)
    assert summary.usable("val") == [] and len(summary.usable("train")) == 3
    assert any(f"WARNING: no usable clip under {tmp_path}/videos/val" in line for line in lines)


def test_no_usable_clip_stops_with_a_message_naming_the_uri(tmp_path):
    make_broken_videos(tmp_path / "videos" / "train")
    with pytest.raises(DataError, match=f"no usable clip under {tmp_path}/videos/train") as err:
        training_summary(CFG, str(tmp_path), echo=lambda _: None)
    assert "truncated" in str(err.value) and "vidpred data inspect" in str(err.value)


def test_a_tree_without_videos_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match="no videos/ folder"):
        check_root(str(tmp_path))


def test_damage_found_only_while_decoding_is_reported_and_the_good_part_kept(tmp_path):
    """Bypass the probe: a file cut mid-stream gives the clips before the cut, then one report."""
    make_broken_videos(tmp_path)
    log = Recorder()
    fn = ClipsFromVideo(DataConfig(height=16, width=16, context=2, future=2, stride=2), skip_log=log)
    rows = list(fn({"uri": str(tmp_path / "cut_mid_stream.mov")}))
    assert rows and all(set(r) == {"frames"} for r in rows)
    assert [s.reason for s in log.skips] == [Reason.DECODE] and f"after {len(rows)} clips" in log.skips[0].detail
    assert list(fn({"uri": str(tmp_path / "too_short.mov")})) == []
    assert log.skips[-1].reason == Reason.TOO_SHORT


def test_summary_merges_decode_time_skips_once(tmp_path):
    summary = DataSummary(root=str(tmp_path))
    log = Recorder()
    assert list(ClipsFromVideo(CFG, skip_log=log)({"uri": str(tmp_path / "missing.mov")})) == []
    summary.add_skips(log.skips + log.skips)
    assert len(summary.skipped) == 1 and summary.skipped[0].reason == Reason.READ


def test_header_only_probe_misses_only_what_needs_the_data_and_decoding_catches_it(tmp_path):
    expected = mixed_tree(tmp_path)
    summary = survey(CFG.model_copy(update={"probe": "header"}), str(tmp_path), splits=("train",))
    got = {s.uri.rsplit("/", 1)[-1]: str(s.reason) for s in summary.skipped}
    assert got == {k: v for k, v in expected.items() if k != "cut_mid_stream.mov"}
    cut = next(v for v in summary.usable("train") if v.uri.endswith("cut_mid_stream.mov"))
    log = Recorder()
    list(ClipsFromVideo(CFG, skip_log=log)({"uri": cut.uri}))
    assert [s.reason for s in log.skips] == [Reason.DECODE]
