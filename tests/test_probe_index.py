"""The probe index: a dataset seen before is accounted for without opening its files, with the same account
(skips included) as a full probe; new, changed and deleted files are noticed; a bad index is ignored with a
warning. Files are changed for real (new bytes, sizes, modification times), and the same-stat check proves
that unchanged files are not read: a file whose bytes were swapped for garbage while its size and mtime
stayed still looks healthy through the index, and broken without it."""

import json
import logging
import os

import numpy as np
import pytest

from vidpred.config import DataConfig
from vidpred.data.probe import Reason, Skip
from vidpred.data.probe_index import encode, index_uri
from vidpred.data.report import survey, training_summary
from vidpred.data.sources import SPLITS

from test_data_bad import add_val, mixed_tree
from videos import encode as encode_video
from videos import seconds

RUN = ("train", "val")


def config(tmp_path, **kw) -> DataConfig:
    return DataConfig(**{"height": 16, "width": 16, "context": 2, "future": 2, "stride": 2,
                         "cache_dir": str(tmp_path / "cache"), **kw})


def account(summary) -> dict:
    return summary.to_dict()


def swap_bytes_keep_stat(path) -> None:
    """Garbage of the same size in ``path``, its modification time put back: only a read can tell."""
    st = path.stat()
    path.write_bytes(np.random.default_rng(1).bytes(st.st_size))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def touch_later(path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def names(summary) -> tuple[set[str], dict[str, str]]:
    usable = {v.uri.rsplit("/", 1)[-1] for v in summary.videos}
    return usable, {s.uri.rsplit("/", 1)[-1]: str(s.reason) for s in summary.skipped}


def test_a_second_survey_reads_no_file_and_gives_the_same_account(tmp_path):
    root = tmp_path / "data"
    expected = {**mixed_tree(root), **add_val(root)}
    expected.pop("val")   # the missing split folder is there now
    cfg = config(tmp_path)
    cold = survey(cfg, str(root), splits=RUN)
    files = len([p for p in root.rglob("*") if p.is_file()])
    assert (cold.probed, cold.reused) == (files, 0)

    warm = survey(cfg, str(root), splits=RUN)
    assert (warm.probed, warm.reused) == (0, files)
    assert account(warm) == account(cold) == account(survey(config(tmp_path, probe_index="off"), str(root), RUN))
    assert warm.skip_table() == cold.skip_table() and names(warm)[1] == expected   # every kind of bad file, again

    swap_bytes_keep_stat(root / "videos/train/good_a.mov")
    trusted = survey(cfg, str(root), splits=RUN)
    assert trusted.probed == 0 and account(trusted) == account(cold)      # not opened: still the healthy facts
    usable, skipped = names(survey(config(tmp_path, probe_index="off"), str(root), RUN))
    assert "good_a.mov" not in usable and skipped["good_a.mov"] == "not a video"   # what a read finds now


def test_a_changed_file_is_probed_again(tmp_path):
    root = tmp_path / "data"
    mixed_tree(root)
    cfg = config(tmp_path)
    survey(cfg, str(root))
    (root / "videos/train/good_b.mp4").write_bytes(b"now a text file")            # another size
    swap_bytes_keep_stat(root / "videos/train/good_a.mov")
    touch_later(root / "videos/train/good_a.mov")                                   # same size, newer mtime
    encode_video(root / "videos/train/too_short.mov", seconds(2.0))                 # was too short, now fine

    again = survey(cfg, str(root))
    assert again.probed == 3
    usable, skipped = names(again)
    assert skipped["good_b.mp4"] == skipped["good_a.mov"] == "not a video"
    assert "too_short.mov" in usable and "too_short.mov" not in skipped
    assert account(again) == account(survey(config(tmp_path, probe_index="off"), str(root)))


def test_a_new_file_is_probed_and_a_deleted_one_dropped(tmp_path):
    root = tmp_path / "data"
    mixed_tree(root)
    cfg = config(tmp_path)
    first = survey(cfg, str(root))
    (root / "videos/train/bikes.mp4").unlink()
    (root / "videos/train/random_bytes.mov").unlink()
    encode_video(root / "videos/train/new.mov", seconds(1.6))

    again = survey(cfg, str(root))
    assert (again.probed, again.reused) == (1, first.probed - 2)
    usable, skipped = names(again)
    assert usable == {"good_a.mov", "good_b.mp4", "new.mov"} and "random_bytes.mov" not in skipped
    stored = json.loads(open(again.index).read())["files"]
    assert "videos/train/new.mov" in stored
    assert "videos/train/bikes.mp4" not in stored and "videos/train/random_bytes.mov" not in stored


def test_folders_a_survey_did_not_list_keep_their_entries(tmp_path):
    """``data inspect`` surveys test too; a training run lists train and val only and must not forget test."""
    root = tmp_path / "data"
    mixed_tree(root)
    add_val(root)
    encode_video(root / "videos/test/t.mov", seconds(1.6))
    cfg = config(tmp_path)
    everything = survey(cfg, str(root), splits=SPLITS)
    training = survey(cfg, str(root), splits=RUN)
    assert training.probed == 0
    assert "videos/test/t.mov" in json.loads(open(training.index).read())["files"]
    again = survey(cfg, str(root), splits=SPLITS)
    assert again.probed == 0 and account(again) == account(everything)


def test_clip_counts_and_too_short_follow_the_config_not_the_index(tmp_path):
    """The index keeps facts, not verdicts: a longer clip makes short videos unusable without a new probe."""
    root = tmp_path / "data"
    mixed_tree(root)
    survey(config(tmp_path), str(root))
    longer = dict(context=10, future=10, stride=3)   # 20 frames at 10 fps: good_a (1.6 s) is too short now
    warm = survey(config(tmp_path, **longer), str(root))
    cold = survey(config(tmp_path, probe_index="off", **longer), str(root))
    assert warm.probed == 0 and account(warm) == account(cold)
    usable, skipped = names(warm)
    assert skipped["good_a.mov"] == "shorter than one clip" and "good_b.mp4" in usable
    assert sorted(v.clips for v in warm.videos) == sorted(v.clips for v in cold.videos)


@pytest.mark.parametrize("damage", ["not json {", "[1, 2]", '{"format": 1, "files": []}', "\xff\xfe binary"])
def test_a_corrupt_index_is_ignored_with_a_warning(tmp_path, caplog, damage):
    root = tmp_path / "data"
    mixed_tree(root)
    cfg = config(tmp_path)
    first = survey(cfg, str(root))
    with open(first.index, "wb") as f:
        f.write(damage.encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="vidpred.data"):
        again = survey(cfg, str(root))
    assert any("probe index" in r.message and "probing every file again" in r.message for r in caplog.records)
    assert again.probed == first.probed and account(again) == account(first)
    assert survey(cfg, str(root)).probed == 0   # rewritten whole


def test_a_malformed_entry_counts_as_missing(tmp_path, caplog):
    root = tmp_path / "data"
    mixed_tree(root)
    cfg = config(tmp_path)
    first = survey(cfg, str(root))
    data = json.loads(open(first.index).read())
    data["files"]["videos/train/good_a.mov"][4] = "wide"           # the width, not a number
    data["files"]["videos/train/photo.mov"][3] = "no such reason"
    with open(first.index, "w") as f:
        json.dump(data, f)
    with caplog.at_level(logging.WARNING, logger="vidpred.data"):
        again = survey(cfg, str(root))
    assert again.probed == 2 and account(again) == account(first)
    assert any("2 malformed entries" in r.message for r in caplog.records)


def test_a_failed_write_warns_and_the_survey_goes_on(tmp_path, caplog):
    root = tmp_path / "data"
    mixed_tree(root)
    cfg = config(tmp_path)
    os.makedirs(index_uri(cfg, str(root)))          # a folder where the index file goes: unreadable, unwritable
    with caplog.at_level(logging.WARNING, logger="vidpred.data"):
        summary = survey(cfg, str(root))
    assert any("not written" in r.message for r in caplog.records)
    assert account(summary) == account(survey(config(tmp_path, probe_index="off"), str(root)))


def test_off_writes_nothing_and_refresh_probes_everything_again(tmp_path):
    root = tmp_path / "data"
    mixed_tree(root)
    off = survey(config(tmp_path, probe_index="off"), str(root))
    assert off.index is None and not (tmp_path / "cache").exists()
    cfg = config(tmp_path)
    first = survey(cfg, str(root))
    swap_bytes_keep_stat(root / "videos/train/good_a.mov")
    refreshed = survey(config(tmp_path, probe_index="refresh"), str(root))
    assert refreshed.probed == first.probed and names(refreshed)[1]["good_a.mov"] == "not a video"
    assert survey(cfg, str(root)).probed == 0     # the refreshed index is the one used next
    assert names(survey(cfg, str(root)))[1]["good_a.mov"] == "not a video"


def test_header_and_full_probes_keep_separate_indexes(tmp_path):
    """A header probe cannot see truncation: its results must never stand in for a full probe's."""
    root = tmp_path / "data"
    mixed_tree(root)
    header = survey(config(tmp_path, probe="header"), str(root))
    full = survey(config(tmp_path), str(root))
    assert header.index != full.index and full.probed == header.probed
    assert names(full)[1]["cut_mid_stream.mov"] == "truncated" and "cut_mid_stream.mov" in names(header)[0]


def test_what_is_kept_depends_only_on_the_bytes():
    assert encode(Skip("x.mov", Reason.READ, "connection reset")) is None   # a storage failure may pass
    assert encode(Skip("x.mov", Reason.TOO_SHORT, "3 frames")) is None      # depends on the data config
    assert encode(Skip("x.mov", Reason.TRUNCATED, "cut"))[:2] == ["s", "truncated"]


def test_training_summary_says_what_the_index_gave(tmp_path):
    root = tmp_path / "data"
    mixed_tree(root)
    add_val(root)
    cfg = config(tmp_path)
    training_summary(cfg, str(root), echo=lambda _: None)
    lines = []
    training_summary(cfg, str(root), echo=lines.append)
    files = len([p for p in root.rglob("*") if p.is_file()])
    assert any(f": {files} files known unchanged, 0 probed" in line for line in lines)


def test_s3_dataset_is_indexed_too_and_the_index_may_live_in_a_bucket(tmp_path, s3_env):
    local = tmp_path / "data"
    mixed_tree(local)
    uri = s3_env.upload_tree(local, s3_env.make_bucket("index-data"), "bdd")
    s3_env.make_bucket("index-store")
    cfg = config(tmp_path, probe_index_dir="s3://index-store/indexes")
    cold = survey(cfg, uri)
    assert cold.index.startswith("s3://index-store/indexes/") and cold.probed > 0
    warm = survey(cfg, uri)
    assert (warm.probed, warm.reused) == (0, cold.probed) and account(warm) == account(cold)

    client = s3_env.client()
    client.put_object(Bucket="index-data", Key="bdd/videos/train/good_b.mp4", Body=b"not a video any more")
    client.delete_object(Bucket="index-data", Key="bdd/videos/train/bikes.mp4")
    again = survey(cfg, uri)
    assert again.probed == 1
    usable, skipped = names(again)
    assert skipped["good_b.mp4"] == "not a video" and "bikes.mp4" not in usable
    assert account(again) == account(survey(config(tmp_path, probe_index="off"), uri))
