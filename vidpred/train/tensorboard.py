"""TensorBoard for a training run: every loss term and learning rate each step, validation metrics and a
picture (context | truth | prediction) at each validation. Rank 0 writes; other ranks get no board.

Events go to ``<storage_path>/<run name>/tensorboard`` when storage is local (``tensorboard --logdir`` on
the run dir shows them), else to ``<cache_dir>/tensorboard/<run name>`` on rank 0's node. The writer is
tensorboardX, which Ray Train already depends on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from vidpred.config import Config

log = logging.getLogger("vidpred.train")


def logdir(cfg: Config, ctx) -> Path:
    """Where rank 0 writes, from Ray Train's context (the run name and storage Ray resolved)."""
    import pyarrow.fs as pafs

    storage = ctx.get_storage()
    if isinstance(storage.storage_filesystem, pafs.LocalFileSystem):
        return Path(storage.experiment_fs_path) / "tensorboard"
    return Path(cfg.data.cache_dir) / "tensorboard" / ctx.get_experiment_name()


def picture(context: torch.Tensor, truth: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """uint8 [C, H, W, 3], [F, H, W, 3], [F, H, W, 3] -> one uint8 CHW image: truth row above prediction row."""
    top = torch.cat([*context, *truth], dim=1)
    bottom = torch.cat([*context, *pred], dim=1)
    return torch.cat([top, bottom], dim=0).permute(2, 0, 1).contiguous()


class Board:
    """A thin wrapper over a SummaryWriter with vidpred's tag names."""

    def __init__(self, directory: Path):
        from tensorboardX import SummaryWriter

        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.writer = SummaryWriter(str(directory))

    @classmethod
    def for_run(cls, cfg: Config, ctx) -> "Board | None":
        if not cfg.train.tensorboard or ctx.get_world_rank() != 0:
            return None
        try:
            return cls(logdir(cfg, ctx))
        except Exception as exc:  # noqa: BLE001 - a board that cannot be written must not stop training
            log.warning("[vidpred] TensorBoard disabled: %s: %s", type(exc).__name__, exc)
            return None

    def losses(self, step: int, terms: dict[str, float], lrs: dict[str, float]) -> None:
        for name, value in terms.items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        for name, value in lrs.items():
            self.writer.add_scalar(f"lr/{name}", value, step)

    def validation(self, step: int, flat: dict[str, float], image: torch.Tensor | None) -> None:
        for name, value in flat.items():
            self.writer.add_scalar(f"val/{name.removeprefix('val_')}", value, step)
        if image is not None:
            self.writer.add_image("val/context_truth_prediction", image.numpy(), step, dataformats="CHW")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
