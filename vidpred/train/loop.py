"""``train_loop_per_worker``: what each Ray Train worker runs.

build models → wrap in DeepSpeed engines → restore the latest checkpoint if Ray has one → take this
worker's shard → GAN steps → report losses every step, a checkpoint every ``checkpoint_every`` steps and at
the end. Every worker runs exactly ``train.steps`` steps (cycling over its shard), so the collectives inside
DeepSpeed always have all ranks present.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import ray.train
import torch

from vidpred.config import Config
from vidpred.data.report import run_data_metrics
from vidpred.model import Discriminators, Generator, count_parameters
from vidpred.train import checkpoint
from vidpred.train.engines import build_engines
from vidpred.train.monitor import Monitor
from vidpred.train.step import gan_step

# A logger, not print: Ray Train's worker print patch both tees and logs a print, showing it twice.
log = logging.getLogger("vidpred.train")


class Trainer:
    """One worker's training run; the methods name the steps."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.ctx = ray.train.get_context()
        self.rank = self.ctx.get_world_rank()
        self.step = 0

    def log(self, msg: str) -> None:
        if self.rank == 0:
            log.info("[vidpred] %s", msg)

    def build(self) -> None:
        torch.manual_seed(self.cfg.train.seed)  # same initial weights on every rank
        generator, discriminator = Generator(self.cfg.model), Discriminators(self.cfg.model)
        self.log(f"generator {count_parameters(generator):,} params, "
                 f"discriminators ({'+'.join(discriminator.names)}) {count_parameters(discriminator):,} params, "
                 f"ZeRO-{self.cfg.train.zero_stage}, {self.cfg.train.precision}, "
                 f"{self.ctx.get_world_size()} workers")
        self.g_eng, self.d_eng = build_engines(generator, discriminator, self.cfg)
        self.monitor = Monitor(self.cfg, self.ctx)  # TensorBoard (rank 0) and validation

    def restore(self) -> None:
        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return
        with ckpt.as_directory() as directory:
            self.step = checkpoint.restore(self.g_eng, self.d_eng, directory)
        self.log(f"resumed from step {self.step}")

    def batches(self):
        """This worker's shard, epoch after epoch, until the step budget is spent."""
        shard = ray.train.get_dataset_shard("train")
        epoch = 0
        while True:
            seen = 0
            for batch in shard.iter_torch_batches(
                batch_size=self.cfg.data.batch_size, dtypes=torch.uint8, drop_last=False,
                local_shuffle_buffer_size=4 * self.cfg.data.batch_size,
                local_shuffle_seed=self.cfg.train.seed + 1000 * epoch + self.rank,
            ):
                seen += 1
                yield batch["frames"]
            if seen == 0:
                raise RuntimeError("this worker's shard holds no clips: every video was skipped or too short "
                                   "(see the warnings above), or there are fewer clips than workers")
            epoch += 1

    def report(self, metrics: dict[str, Any], with_checkpoint: bool) -> None:
        if not with_checkpoint:
            ray.train.report(metrics)
            return
        metrics = {**metrics, **run_data_metrics(self.ctx.get_experiment_name())}  # usable / skipped files
        tmp = checkpoint.save(self.g_eng, self.d_eng, self.step, self.cfg, self.rank)
        with tmp:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp.name))

    def fit(self) -> None:
        t = self.cfg.train
        started = time.perf_counter()
        batches = self.batches()
        while self.step < t.steps:
            losses = gan_step(self.g_eng, self.d_eng, next(batches), self.cfg, step=self.step)
            self.step += 1
            if not all(torch.isfinite(torch.tensor(list(losses.values())))):
                self.log(f"step {self.step}: non-finite loss {losses}")
            metrics = {"step": self.step, **losses, **self.monitor.after_step(self.step, losses, self.g_eng, self.d_eng)}
            if self.step % t.log_every == 0 or self.step == t.steps:
                rate = self.step / (time.perf_counter() - started)
                shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "step")
                self.log(f"step {self.step}/{t.steps} {shown} ({rate:.2f} steps/s)")
            self.report(metrics, self.step % t.checkpoint_every == 0 or self.step == t.steps)


def quiet_worker_logs() -> None:
    """Keep the driver's output to vidpred's progress: Ray Train logs every report at INFO, and
    DeepSpeed calls a torch.distributed function that warns it is deprecated on every step."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed")


def train_loop_per_worker(config: dict[str, Any]) -> None:
    quiet_worker_logs()
    trainer = Trainer(Config.model_validate(config))
    trainer.build()
    trainer.restore()
    trainer.fit()
    trainer.monitor.close()
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
