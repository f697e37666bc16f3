"""What a run shows while it trains: losses (means over each logging interval) and learning rates to
TensorBoard at every report, and every ``train.val_every`` steps and at the last step a validation (PSNR/SSIM of the model and of copy-last-frame on the first
``train.val_clips`` clips of the val split) that goes to TensorBoard, the log and Ray's reported metrics.

Every rank validates (under ZeRO-3 each forward needs all ranks to gather the generator's weights);
rank 0 writes. Validation draws its noise from a fixed seed, so its numbers are comparable across steps,
and it leaves the training random stream untouched.
"""

from __future__ import annotations

import torch

from vidpred.config import Config
from vidpred.model import to_model_space, to_uint8
from vidpred.model.metrics import score_clips, sharpness_ratio, summarize
from vidpred.train.tensorboard import Board, picture

VAL_DATASET = "val"


def val_clips(cfg: Config) -> torch.Tensor | None:
    """The validation clips as uint8 (N, T, H, W, 3), read once; None when the run has no val split."""
    import ray.train

    try:
        shard = ray.train.get_dataset_shard(VAL_DATASET)
    except (KeyError, ValueError):
        return None
    if shard is None:
        return None
    batches = [b["frames"] for b in shard.iter_torch_batches(batch_size=cfg.train.val_clips, dtypes=torch.uint8)]
    return torch.cat(batches)[: cfg.train.val_clips] if batches else None


@torch.no_grad()
def validate(generator: torch.nn.Module, clips: torch.Tensor, cfg: Config, device, dtype, seed: int):
    """(flat metrics {"val_psnr", "val_ssim", "val_copy_last_psnr", "val_copy_last_ssim", "val_sharpness"},
    a CHW uint8 picture). ``val_sharpness``: the predictions' RMS gradient over the truth's (1 = as sharp)."""
    c, f = cfg.data.context, cfg.data.future
    frames = to_model_space(clips).to(device=device, dtype=dtype)
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)
        pred = generator.predict(frames[:, :c], future=f)
    summary = summarize(score_clips(pred.float()[None], frames[:, :c].float(), frames[:, c:].float()))
    model, copy = summary["model"], summary["copy_last"]
    flat = {"val_psnr": model["psnr"]["mean"], "val_ssim": model["ssim"]["mean"],
            "val_copy_last_psnr": copy["psnr"]["mean"], "val_copy_last_ssim": copy["ssim"]["mean"],
            "val_sharpness": sharpness_ratio(pred.float(), frames[:, c:].float())}
    image = picture(to_uint8(frames[0, :c]), to_uint8(frames[0, c:]), to_uint8(pred[0]))
    return flat, image


class Monitor:
    def __init__(self, cfg: Config, ctx):
        self.cfg = cfg
        self.board = Board.for_run(cfg, ctx)
        self.clips = val_clips(cfg)

    def due(self, step: int, last: bool) -> bool:
        """Whether ``step`` validates: every ``train.val_every`` steps and at the run's last step."""
        return self.clips is not None and (step % self.cfg.train.val_every == 0 or last)

    def interval(self, step: int, means: dict[str, float], g_eng, d_eng) -> None:
        """One logging interval's mean losses and the learning rates now, to TensorBoard (at ``step``)."""
        if self.board is not None:
            self.board.losses(step, means, {"g": g_eng.get_lr()[0], "d": d_eng.get_lr()[0]})

    def validate(self, step: int, g_eng) -> dict[str, float]:
        """Validate now (every rank: ZeRO-3 gathers G's weights); the metrics, also on TensorBoard."""
        flat, image = validate(g_eng.module, self.clips, self.cfg, g_eng.device,
                               torch.bfloat16 if g_eng.bfloat16_enabled() else torch.float32, self.cfg.train.seed)
        if self.board is not None:
            self.board.validation(step, flat, image)
        return flat

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
