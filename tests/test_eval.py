"""``vidpred eval`` on a real checkpoint directory and real H.264 video: every file is written, the PNGs and
the GIF decode at the sizes their layout gives, the JSON and the markdown agree. No Ray, no DeepSpeed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidpred.cli import main
from vidpred.config import Config
from vidpred.data.synth import synth_dataset
from vidpred.eval.evaluate import sharpness
from vidpred.eval.pictures import GAP, LABEL_W
from vidpred.eval.plot import DPI, PANEL_INCHES
from vidpred.model import Generator
from vidpred.train.checkpoint import GENERATOR_FILE, META_FILE

H = W = 32
CONTEXT, FUTURE = 2, 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    synth_dataset(root, clips=1, seconds=2.0, fps=30, size=(96, 64), seed=3)  # val: 1 video, 20 frames at 10 fps
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint directory as training writes it (generator.pt + meta.json), for an untrained tiny model."""
    ck = tmp_path_factory.mktemp("ckpt")
    cfg = Config.model_validate({"data": {"height": H, "width": W, "context": CONTEXT, "future": FUTURE, "stride": 2}})
    torch.manual_seed(0)
    torch.save(Generator(cfg.model).state_dict(), ck / GENERATOR_FILE)
    (ck / META_FILE).write_text(json.dumps({"step": 7, "config": cfg.model_dump(mode="json")}))
    return ck


def test_eval_writes_every_file_at_the_right_sizes(dataset, checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["eval", "--checkpoint", str(checkpoint), "--data", str(dataset), "--out", str(out),
               "--samples", "2", "--clips", "5", "--stride", "2"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "copy-last PSNR" in printed and "| future step |" in printed

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clips"] == 5 and metrics["samples"] == 2 and metrics["step"] == 7
    for who in ("model", "copy_last"):
        for m in ("psnr", "ssim"):
            assert len(metrics[who][m]["per_step"]) == FUTURE
            assert metrics[who][m]["mean"] == pytest.approx(sum(metrics[who][m]["per_step"]) / FUTURE)
        assert len(metrics[who]["sharpness"]["per_step"]) == FUTURE and metrics[who]["sharpness"]["mean"] > 0
    table = (out / "metrics.md").read_text()
    assert table.count("\n| ") == FUTURE + 2  # header, one row per step, the mean row
    assert f"{metrics['copy_last']['psnr']['mean']:.2f}" in table
    assert f"model {metrics['model']['sharpness']['mean']:.3f}, copy-last" in table

    shown = 4  # SHOWN_CLIPS of the 5
    fh, fw = 2 * H, 2 * W  # frames are drawn at 2x
    with Image.open(out / "grid.png") as grid:
        assert grid.format == "PNG"
        assert grid.size == (LABEL_W + (CONTEXT + FUTURE) * (fw + GAP) + 3 * GAP, shown * (2 * (fh + GAP) + GAP))
    with Image.open(out / "prediction.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == CONTEXT + FUTURE
        assert gif.size == (3 * fw + 4 * GAP, shown * (fh + 12 + GAP) + GAP)  # truth | model | copy-last
        gif.seek(gif.n_frames - 1)
        gif.convert("RGB").load()
    with Image.open(out / "metrics.png") as plot:
        assert plot.format == "PNG" and plot.size == (2 * PANEL_INCHES[0] * DPI, PANEL_INCHES[1] * DPI)
        assert len(set(plot.convert("RGB").getdata())) > 3  # lines and text, not a blank canvas


def test_sharpness_is_one_for_the_truth_and_below_for_a_blur():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (2, FUTURE, H, W, 3), dtype=np.uint8)
    blurred = ((truth[:, :, :-1].astype(np.uint16) + truth[:, :, 1:]) // 2).astype(np.uint8)  # vertical 2-tap mean
    same = sharpness(truth, truth)
    assert same["per_step"] == pytest.approx([1.0] * FUTURE) and same["mean"] == pytest.approx(1.0)
    assert sharpness(blurred, truth[:, :, :-1])["mean"] < 0.8
    noisy = np.clip(truth.astype(int) + rng.integers(-60, 61, truth.shape), 0, 255).astype(np.uint8)
    assert sharpness(noisy, truth)["mean"] > 1.0


def test_eval_bad_arguments_exit_2_naming_the_problem(checkpoint, tmp_path):
    code = ("import sys; from vidpred.cli import main; "
            f"sys.exit(main(['eval', '--checkpoint', {str(checkpoint)!r}, '--data', {str(tmp_path / 'nope')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "data.uri" in proc.stderr and "does not exist" in proc.stderr
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "empty")]) == 2


def test_eval_scores_further_ahead_than_trained_on_clips_that_do_not_overlap(dataset, checkpoint, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(dataset), "--out", str(out),
                 "--future", "6"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # 20 frames at 10 fps, clips of 2 + 6 frames every 8 (the default stride: context + future): 2 clips
    assert metrics["future"] == 6 and metrics["trained_future"] == FUTURE and metrics["stride"] == 8
    assert metrics["clips"] == 2 and len(metrics["model"]["psnr"]["per_step"]) == 6
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(dataset), "--out", str(out),
                 "--stride", "0", "--force"]) == 2


def test_eval_clips_follow_the_stride_from_the_start_of_each_video(checkpoint, tmp_path):
    """A video of numbered frames: the default stride starts a clip every context + future frames (each
    frame scored once), ``stride`` 1 at every frame."""
    from videos import brightness_index, encode, seconds

    from vidpred.eval.evaluate import data_config, read_clips

    encode(tmp_path / "videos" / "val" / "a.mov", seconds(2.0))  # 60 frames at 30 fps: 20 at 10 fps
    run = json.loads((checkpoint / META_FILE).read_text())["config"]
    firsts = {}
    for stride in (None, 1):
        cfg = data_config(run, str(tmp_path), stride=stride)
        clips = read_clips(cfg.uri, cfg, "val", limit=100)
        firsts[stride] = [brightness_index(c[0]) for c in clips]
    step = firsts[1][1] - firsts[1][0]  # source frames per frame at 10 fps (3)
    assert len(firsts[1]) == 20 - (CONTEXT + FUTURE) + 1
    assert firsts[None] == firsts[1][::CONTEXT + FUTURE] and len(firsts[None]) == 4 and step == 3
