"""Synthetic dashcam generator: BDD100K layout, decodable H.264 .mov, determinism, reuse, atomic writes,
argument checks. Small sizes only; the 720p speed goal lives in benchmarks/synth_speed.py, not here."""

import av
import numpy as np
import pytest

from vidpred.data import synth
from vidpred.data.synth import parse_size, render_clip, render_frames, synth_dataset

SIZE = (160, 96)
FPS = 12
SECONDS = 1.0


def decode(path):
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        info = dict(codec=st.codec_context.name, pix_fmt=st.codec_context.pix_fmt, width=st.codec_context.width,
                    height=st.codec_context.height, rate=st.average_rate, fmt=c.format.name)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(st)]
    return info, frames


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    messages = []
    paths = synth_dataset(out, clips=3, seconds=SECONDS, fps=FPS, size=SIZE, seed=1, val_fraction=0.25,
                          progress=messages.append)
    return out, paths, messages


def test_tree_layout_and_every_clip_decodes(tree):
    out, paths, messages = tree
    train = sorted((out / "videos" / "train").iterdir())
    val = sorted((out / "videos" / "val").iterdir())
    assert len(train) == 3 and len(val) == 1          # max(1, round(3 * 0.25)) val clips
    assert sorted(paths) == sorted(train + val)
    assert all(p.suffix == ".mov" for p in paths)     # and no temp files left behind
    assert len(messages) == 4
    for path in paths:
        info, frames = decode(path)
        assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and "mov" in info["fmt"]
        assert (info["width"], info["height"]) == SIZE
        assert info["rate"] == FPS
        assert len(frames) == round(SECONDS * FPS)
        assert frames[0].shape == (SIZE[1], SIZE[0], 3)


def test_clips_of_a_set_differ(tree):
    _, paths, _ = tree
    firsts = [decode(p)[1][0].astype(int) for p in paths]
    for a in range(len(firsts)):
        for b in range(a + 1, len(firsts)):
            assert np.abs(firsts[a] - firsts[b]).mean() > 5


def test_same_call_gives_the_same_tree(tree, tmp_path):
    out, paths, _ = tree
    again = synth_dataset(tmp_path, clips=3, seconds=SECONDS, fps=FPS, size=SIZE, seed=1, val_fraction=0.25)
    assert [p.relative_to(tmp_path) for p in again] == [p.relative_to(out) for p in paths]
    for a, b in zip(paths, again):
        assert a.read_bytes() == b.read_bytes()


def test_same_seed_same_frames_other_seed_other_frames(tmp_path):
    a = list(render_frames(6, FPS, SIZE, seed=3))
    b = list(render_frames(6, FPS, SIZE, seed=3))
    c = list(render_frames(6, FPS, SIZE, seed=4))
    assert all(x.dtype == np.uint8 and x.shape == (SIZE[1], SIZE[0], 3) for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.abs(a[0].astype(int) - c[0].astype(int)).mean() > 5
    # and through the encoder: identical decoded frames (the encoder is single-threaded, mbtree off)
    p1 = render_clip(tmp_path / "a.mov", SECONDS, FPS, SIZE, seed=3)
    p2 = render_clip(tmp_path / "b.mov", SECONDS, FPS, SIZE, seed=3)
    f1, f2 = decode(p1)[1], decode(p2)[1]
    assert all(np.array_equal(x, y) for x, y in zip(f1, f2))


@pytest.mark.parametrize("seed", [0, 5, 9])
def test_consecutive_frames_move(seed):
    frames = [f.astype(np.int16) for f in render_frames(8, FPS, SIZE, seed)]
    for prev, cur in zip(frames, frames[1:]):
        assert not np.array_equal(prev, cur)
        assert (np.abs(cur - prev).max(axis=-1) > 8).mean() > 0.002   # visible motion, not noise


def test_rerun_skips_existing_files(tmp_path):
    kw = dict(clips=1, seconds=0.5, fps=FPS, size=SIZE, seed=2)
    paths = synth_dataset(tmp_path, **kw)
    stamps = [p.stat().st_mtime_ns for p in paths]
    messages = []
    again = synth_dataset(tmp_path, **kw, progress=messages.append)
    assert again == paths
    assert [p.stat().st_mtime_ns for p in again] == stamps
    assert all("skipped" in m for m in messages) and len(messages) == 2


def test_existing_file_of_other_size_is_replaced(tmp_path):
    paths = synth_dataset(tmp_path, clips=1, seconds=0.5, fps=FPS, size=SIZE, seed=2)
    synth_dataset(tmp_path, clips=1, seconds=0.5, fps=FPS, size=(96, 64), seed=2)
    info, frames = decode(paths[0])
    assert (info["width"], info["height"]) == (96, 64) and len(frames) == 6


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synth._Scene.frame

    def failing(self, i, out=None):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, i, out)

    monkeypatch.setattr(synth._Scene, "frame", failing)
    with pytest.raises(KeyboardInterrupt):
        render_clip(tmp_path / "x.mov", SECONDS, FPS, SIZE, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_parse_size():
    assert parse_size("1280x720") == (1280, 720)
    assert parse_size("160X96") == (160, 96)
    for bad in ["1280", "1280x", "x720", "axb", "0x720", "1280x0", "-1x720", "1280*720", "", None]:
        with pytest.raises(ValueError, match=r"size must be WIDTHxHEIGHT, e\.g\. 1280x720"):
            parse_size(bad)


@pytest.mark.parametrize("size", [(161, 96), (160, 95), (0, 96), (8, 8)])
def test_bad_size_raises(size, tmp_path):
    with pytest.raises(ValueError, match="size"):
        synth_dataset(tmp_path, clips=1, seconds=0.5, fps=FPS, size=size)
    with pytest.raises(ValueError, match="size"):
        render_clip(tmp_path / "a.mov", 0.5, FPS, size, seed=0)
    with pytest.raises(ValueError, match="size"):
        next(render_frames(2, FPS, size, seed=0))
    assert list(tmp_path.iterdir()) == []


def test_odd_size_message_says_even():
    with pytest.raises(ValueError, match="even"):
        next(render_frames(2, FPS, (161, 96), seed=0))


@pytest.mark.parametrize("kwargs", [dict(clips=0), dict(seconds=0), dict(fps=0), dict(fps=29.97),
                                    dict(val_fraction=-0.1), dict(seed=-1)])
def test_bad_arguments_raise(kwargs, tmp_path):
    args = dict(clips=1, seconds=0.5, fps=FPS, size=SIZE) | kwargs
    with pytest.raises(ValueError):
        synth_dataset(tmp_path, **args)
