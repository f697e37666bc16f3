"""``vidpred eval``: score a checkpoint's generator against copy-last-frame on the same clips, and draw it.

No Ray, no DeepSpeed: the consolidated ``generator.pt`` is loaded on CPU (or ``--device``), clips are
decoded straight from the dataset with the data room's PyAV path, at the fps, size, context and future
the run trained with. Writes into ``out``:

* ``metrics.json`` - model (best of K) and copy-last PSNR/SSIM, per future step and averaged, plus the setup,
  and each one's sharpness (RMS spatial gradient over the truth's, of the first sample: PSNR and SSIM reward
  blur, this shows it);
* ``metrics.md``   - the same as a markdown table, model vs copy-last per step;
* ``grid.png``     - per clip, context | truth above context | prediction (the first sample);
* ``prediction.gif`` - truth | model | copy-last over time, one row per clip;
* ``metrics.png``  - PSNR and SSIM per future step for both.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidpred import config as config_mod
from vidpred.config import DataConfig
from vidpred.eval.pictures import gif_frames, grid, save_gif, stack
from vidpred.eval.plot import metrics_plot
from vidpred.model import to_model_space, to_uint8
from vidpred.model.metrics import score_clips, sharpness_ratio, summarize
from vidpred.train.checkpoint import inside_checkpoint, load_generator, read_meta

log = logging.getLogger("vidpred.eval")
SHOWN_CLIPS = 4  # clips drawn in the grid and the GIF
FILES = ("metrics.json", "metrics.md", "grid.png", "prediction.gif", "metrics.png")


@dataclass
class EvalResult:
    summary: dict
    out: Path
    clips: int

    @property
    def files(self) -> list[Path]:
        return [self.out / name for name in FILES]


def data_config(run_config: dict, data_uri: str, future: int | None = None, stride: int | None = None) -> DataConfig:
    """The run's data settings (fps, size, context) pointed at ``data_uri``, validated, with ``future`` frames
    predicted (default: the run's) and a clip every ``stride`` frames (default: context + future, clips that
    do not overlap: a video is scored end to end, each of its frames once)."""
    data = {**run_config["data"], "uri": data_uri}
    data["future"] = data["future"] if future is None else future
    data["stride"] = data["context"] + data["future"] if stride is None else stride
    for flag, value in (("--future", future), ("--stride", stride)):
        if value is not None and value < 1:
            raise config_mod.ConfigError(f"{flag} = {value}: must be at least 1")
    try:
        return config_mod.validate({"data": data, "model": run_config["model"]}).data
    except config_mod.ConfigError as exc:
        raise config_mod.ConfigError(f"--data {data_uri!r} with the checkpoint's settings: {exc}") from None


def read_clips(root: str, cfg: DataConfig, split: str, limit: int) -> np.ndarray:
    """Up to ``limit`` clips [N, T, H, W, 3] uint8, a clip every ``cfg.stride`` frames, spread over the split's
    usable videos in name order (up to ``limit`` / videos from the start of each): the probe training runs
    first (:func:`vidpred.data.report.survey`), so eval scores the files training would use and never the good
    start of a file cut short."""
    from vidpred.data.pipeline import video_clips  # PyAV only where videos are read
    from vidpred.data.report import survey
    from vidpred.data.sources import DataError

    summary = survey(cfg, root, splits=(split,), expected=(split,))
    for skip in summary.skipped:
        log.warning("skipping video %s: %s%s", skip.uri, skip.reason, f" ({skip.detail})" if skip.detail else "")
    videos = summary.require_clips(split)
    per_video = max(1, math.ceil(limit / len(videos)))
    clips: list[np.ndarray] = []
    for video in videos:
        try:
            for i, clip in enumerate(video_clips(video.uri, cfg)):
                if i >= per_video or len(clips) >= limit:
                    break
                clips.append(clip)
        except Exception as exc:  # noqa: BLE001 - a bad video is skipped, as in training
            log.warning("skipping video %s: %s: %s", video.uri, type(exc).__name__, exc)
        if len(clips) >= limit:
            break
    if not clips:
        raise DataError(f"no clip of {cfg.clip_frames} frames at {cfg.fps:g} fps in {root}/videos/{split}")
    return np.stack(clips)


@torch.no_grad()
def predict_and_score(generator, clips: np.ndarray, context: int, samples: int, batch_size: int, device: str):
    """-> (scores {name: [N, F]}, the first sample of every clip as uint8 [N, F, H, W, 3])."""
    scores: dict[str, list[torch.Tensor]] = {}
    firsts = []
    for start in range(0, len(clips), batch_size):
        frames = to_model_space(torch.from_numpy(clips[start:start + batch_size])).to(device)
        ctx, truth = frames[:, :context], frames[:, context:]
        pred = generator.predict(ctx, future=truth.shape[1], samples=samples)
        pred = pred if samples > 1 else pred[None]  # [K, B, F, 3, H, W]
        for name, value in score_clips(pred, ctx, truth).items():
            scores.setdefault(name, []).append(value.cpu())
        firsts.append(to_uint8(pred[0]).cpu())
    return {k: torch.cat(v) for k, v in scores.items()}, torch.cat(firsts).numpy()


def sharpness(pred: np.ndarray, truth: np.ndarray) -> dict:
    """uint8 clips [N, F, H, W, 3] -> {"per_step": [F ratios], "mean": ratio over all frames}: how sharp ``pred``
    is next to ``truth`` (:func:`vidpred.model.metrics.sharpness_ratio`; 1 = as sharp, below 1 = blurrier)."""
    p, t = (torch.from_numpy(np.ascontiguousarray(a)).permute(0, 1, 4, 2, 3) for a in (pred, truth))
    return {"per_step": [sharpness_ratio(p[:, i], t[:, i]) for i in range(p.shape[1])], "mean": sharpness_ratio(p, t)}


def markdown_table(summary: dict, setup: dict) -> str:
    m, c = summary["model"], summary["copy_last"]
    k = setup["samples"]
    lines = [
        f"# vidpred eval: {setup['clips']} clips of `{setup['data']}` ({setup['split']}), "
        f"{setup['context']} context -> {setup['future']} future frames at {setup['fps']:g} fps, "
        f"{setup['height']}x{setup['width']}",
        "",
        f"Model: best of {k} sample{'s' if k > 1 else ''} per clip. Copy-last: the last context frame repeated.",
        "",
        "| future step | model PSNR (dB) | copy-last PSNR (dB) | model SSIM | copy-last SSIM |",
        "|---|---|---|---|---|",
    ]
    for i in range(setup["future"]):
        lines.append(f"| {i + 1} | {m['psnr']['per_step'][i]:.2f} | {c['psnr']['per_step'][i]:.2f} | "
                     f"{m['ssim']['per_step'][i]:.4f} | {c['ssim']['per_step'][i]:.4f} |")
    lines.append(f"| **mean** | **{m['psnr']['mean']:.2f}** | **{c['psnr']['mean']:.2f}** | "
                 f"**{m['ssim']['mean']:.4f}** | **{c['ssim']['mean']:.4f}** |")
    if "sharpness" in m:
        lines += ["", f"Sharpness (RMS spatial gradient over the truth's; 1 = as sharp as real frames, below 1 = "
                      f"blurrier): model {m['sharpness']['mean']:.3f}, copy-last {c['sharpness']['mean']:.3f}."]
    return "\n".join(lines) + "\n"


def report(generator, data: np.ndarray, setup: dict, out: Path, samples: int, batch_size: int = 8,
           device: str = "cpu", pictures: bool = True) -> dict:
    """Score ``data`` (uint8 clips [N, context + future, H, W, 3]) and write every file into ``out`` (only
    the JSON and the table without ``pictures``); returns the summary. ``setup`` describes the run for the
    JSON and the table (context, future, fps, ...)."""
    c = setup["context"]
    scores, firsts = predict_and_score(generator, data, c, samples, batch_size, device)
    summary = summarize(scores)
    truth = data[:, c:]
    summary["model"]["sharpness"] = sharpness(firsts, truth)
    summary["copy_last"]["sharpness"] = sharpness(np.repeat(data[:, c - 1:c], truth.shape[1], axis=1), truth)
    setup = {**setup, "clips": len(data), "samples": samples}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({**setup, **summary}, indent=2))
    (out / "metrics.md").write_text(markdown_table(summary, setup))
    if not pictures:
        return summary
    shown = list(range(min(SHOWN_CLIPS, len(data))))
    stack([grid(data[i, :c], data[i, c:], firsts[i]) for i in shown]).save(out / "grid.png")
    save_gif(gif_frames(data[shown, :c], data[shown, c:], firsts[shown]), out / "prediction.gif", setup["fps"])
    (out / "metrics.png").write_bytes(metrics_plot(summary))
    return summary


def default_out(checkpoint: str | os.PathLike) -> Path:
    """``<run>/eval/<checkpoint name>``: beside the checkpoint, never inside it."""
    ck = Path(checkpoint).expanduser().absolute()
    return ck.parent / "eval" / ck.name


def output_folder(out: Path, force: bool) -> Path:
    """``out`` as the folder eval writes: makeable, outside every checkpoint, and, unless ``force``, holding
    none of the files eval would write over."""
    if problem := config_mod.folder_problem(out):
        raise config_mod.UserError(f"--out {str(out)!r}: {problem}")
    if (holder := inside_checkpoint(out)) is not None:
        raise config_mod.UserError(f"--out {str(out)!r}: lies inside the checkpoint {holder}; vidpred never writes "
                                   "into a checkpoint: choose a folder outside it")
    there = [name for name in FILES if (out / name).exists()]
    if there and not force:
        raise config_mod.UserError(f"--out {str(out)!r}: already holds {', '.join(there)} (an earlier eval); add "
                                   "--force to replace them, or choose another --out")
    return out


def torch_device(device: str) -> str:
    """``device`` if torch can use it here; ConfigError naming ``--device`` otherwise."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError) as exc:
        raise config_mod.ConfigError(f"--device {device!r}: {exc}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise config_mod.ConfigError(f"--device {device!r}: no CUDA GPU is usable here; use --device cpu")
    if kind not in ("cpu", "cuda"):
        raise config_mod.ConfigError(f"--device {device!r}: allowed: cpu, cuda, cuda:N")
    return device


def evaluate(checkpoint: str | os.PathLike, data_uri: str, out: str | os.PathLike | None = None, samples: int = 1,
             clips: int = 32, split: str = "val", seed: int = 0, batch_size: int = 8, device: str = "cpu",
             force: bool = False, future: int | None = None, stride: int | None = None) -> EvalResult:
    """Score and draw a checkpoint on ``clips`` clips of ``data_uri``'s ``split``, ``future`` frames ahead (default:
    as trained), a clip every ``stride`` frames (default: non-overlapping); see the module docstring.
    Nothing is written before every input was checked, and nothing is written over unless ``force``."""
    for flag, value in (("--samples", samples), ("--clips", clips), ("--batch-size", batch_size)):
        if value < 1:
            raise config_mod.ConfigError(f"{flag} = {value}: must be at least 1")
    if seed < 0:
        raise config_mod.ConfigError(f"--seed = {seed}: must be 0 or more")
    device = torch_device(device)
    generator, run_config = load_generator(checkpoint)
    dcfg = data_config(run_config, data_uri, future, stride)
    out = output_folder(Path(out).expanduser().absolute() if out is not None else default_out(checkpoint), force)
    data = read_clips(dcfg.uri, dcfg, split, clips)
    torch.manual_seed(seed)
    setup = {"checkpoint": str(checkpoint), "step": read_meta(checkpoint).get("step"), "data": dcfg.uri,
             "split": split, "seed": seed, "context": dcfg.context, "future": dcfg.future, "stride": dcfg.stride,
             "trained_future": run_config["data"]["future"], "fps": dcfg.fps, "height": dcfg.height,
             "width": dcfg.width}
    summary = report(generator.to(device), data, setup, out, samples, batch_size, device)
    return EvalResult(summary=summary, out=out, clips=len(data))
