"""The picture at the end of ``vidpred train``: context | truth | prediction for one validation clip."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vidpred.config import Config
from vidpred.data.pipeline import video_clips
from vidpred.data.sources import list_videos
from vidpred.eval.pictures import grid
from vidpred.model import to_model_space, to_uint8
from vidpred.train.checkpoint import load_generator


def first_clip(cfg: Config, root: str):
    """The first clip of the first decodable validation video (train split if there is no val)."""
    for video in list_videos(root, "val", cfg.data) or list_videos(root, "train", cfg.data):  # S3 settings too
        try:
            return next(video_clips(video.uri, cfg.data))
        except Exception:  # noqa: BLE001 - a bad or short video (StopIteration included): try the next
            continue
    raise FileNotFoundError(f"no decodable clip under {root}/videos/val or videos/train")


def write_preview(checkpoint_dir: str | os.PathLike, cfg: Config, root: str, out: str | os.PathLike) -> Path:
    """Predict ``future`` frames from the context of one clip and save the grid as PNG at ``out``."""
    generator, _ = load_generator(checkpoint_dir)
    clip = torch.from_numpy(first_clip(cfg, root))[None]           # (1, T, H, W, 3) uint8
    context = clip[:, : cfg.data.context]
    torch.manual_seed(cfg.train.seed)
    with torch.no_grad():
        pred = generator.predict(to_model_space(context), cfg.data.future)
    image = grid(context[0].numpy(), clip[0, cfg.data.context:].numpy(), to_uint8(pred)[0].numpy())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out
