"""``train_loop_per_worker``: what each Ray Train worker runs.

build models → wrap in DeepSpeed engines → restore the latest checkpoint if Ray has one → take this
worker's shard → GAN steps → report losses every step, a checkpoint every ``checkpoint_every`` steps and at
the end. Every worker runs exactly ``train.steps`` steps (cycling over its shard), so the collectives inside
DeepSpeed always have all ranks present.

Restored state: the step, both engines (weights, optimizers), the data position (epoch and batches consumed
in it: the worker skips that many batches of the restored epoch, whose order the driver pins, see
:mod:`vidpred.train.resume`), the non-finite counters; the noise of step k is seeded from (seed, rank, k).
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
from vidpred.train import checkpoint, faults
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
        self.position = faults.Position()  # of the data stream: what this worker has consumed
        self.nonfinite = faults.NonFinitePolicy(cfg.train)

    def log(self, msg: str) -> None:
        if self.rank == 0:
            log.info("[vidpred] %s", msg)

    def announce(self) -> None:
        """Where each worker runs: one line per worker, all logged by rank 0 from what every rank reports of
        itself (the same line from several workers, differing only in numbers, is folded into one by Ray's log
        deduplication). Ray Train's node rank groups workers by IP, so two Ray nodes on one host share node
        rank 0: the Ray node ID tells them apart."""
        here = (ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address(),
                self.ctx.get_node_rank(), self.ctx.get_local_rank())
        workers = [here]
        if torch.distributed.is_initialized():
            workers = [None] * self.ctx.get_world_size()
            torch.distributed.all_gather_object(workers, here)
        for rank, (node, ip, node_rank, local_rank) in enumerate(workers):
            self.log(f"worker rank {rank}/{len(workers)} on node {node} (ip {ip}, node rank {node_rank}, "
                     f"local rank {local_rank})")

    def build(self) -> None:
        torch.manual_seed(self.cfg.train.seed)  # same initial weights on every rank
        generator, discriminator = Generator(self.cfg.model), Discriminators(self.cfg.model)
        self.log(f"generator {count_parameters(generator):,} params, "
                 f"discriminators ({'+'.join(discriminator.names)}) {count_parameters(discriminator):,} params, "
                 f"ZeRO-{self.cfg.train.zero_stage}, {self.cfg.train.precision}, "
                 f"{self.ctx.get_world_size()} workers")
        self.g_eng, self.d_eng = build_engines(generator, discriminator, self.cfg)
        self.monitor = Monitor(self.cfg, self.ctx)  # TensorBoard (rank 0) and validation

    def load(self, ckpt) -> dict[str, Any]:
        """Both engines and the step from ``ckpt``; returns its other progress counters."""
        with ckpt.as_directory() as directory:
            state = checkpoint.restore(self.g_eng, self.d_eng, directory)
        self.step = state["step"]
        return state

    def restore(self) -> None:
        ckpt = ray.train.get_checkpoint()
        if ckpt is None and self.cfg.train.init_from:  # the run's own checkpoints win (a restart resumes them)
            self.nonfinite.load(self.load(ray.train.Checkpoint(self.cfg.train.init_from)))
            self.log(f"started from {self.cfg.train.init_from} at step {self.step}")  # its data position is not ours
        elif ckpt is not None:
            state = self.load(ckpt)
            self.nonfinite.load(state)
            self.position = faults.Position.from_state(state)
            self.log(f"resumed from step {self.step} (data epoch {self.position.epoch}, "
                     f"{self.position.batch} batches into it)")

    def restore_for_nonfinite(self) -> None:
        """Back to the last checkpoint reported (this attempt or an earlier one), both LRs lowered. The data
        stream and the non-finite counters go on: the batches that led to the non-finite losses are not
        replayed, and the skipped steps stay counted."""
        reported = ray.train.get_all_reported_checkpoints()
        was = self.step
        if reported:
            self.load(max(reported, key=lambda r: r.metrics.get("step", -1)).checkpoint)
        self.nonfinite.restored(self.g_eng, self.d_eng)
        self.log(f"step {was}: {self.cfg.train.nonfinite_patience} steps in a row with a non-finite loss: "
                 + (f"restored the checkpoint of step {self.step}" if reported else "no checkpoint yet, kept the weights")
                 + f", learning rates × {self.nonfinite.factor:g} (now G {self.g_eng.get_lr()[0]:.3g}, "
                 f"D {self.d_eng.get_lr()[0]:.3g}; restore {self.nonfinite.restores} of at most "
                 f"{self.nonfinite.max_restores})")

    def batches(self):
        """This worker's shard, epoch after epoch, from ``self.position`` on (the restored epoch's first
        ``position.batch`` batches are read and dropped), until the step budget is spent."""
        shard = ray.train.get_dataset_shard("train")
        skip = self.position.batch
        while True:
            seen = 0
            for batch in shard.iter_torch_batches(
                batch_size=self.cfg.data.batch_size, dtypes=torch.uint8, drop_last=False,
                local_shuffle_buffer_size=4 * self.cfg.data.batch_size,
                local_shuffle_seed=self.cfg.train.seed + 1000 * self.position.epoch + self.rank,
            ):
                seen += 1
                if seen > skip:
                    self.position.batch = seen
                    yield batch["frames"]
            if seen == 0:
                raise RuntimeError("this worker's shard holds no clips: every video was skipped or too short "
                                   "(see the warnings above), or there are fewer clips than workers")
            skip = 0
            self.position = faults.Position(self.position.epoch + 1, 0)

    def report(self, metrics: dict[str, Any], with_checkpoint: bool) -> None:
        if not with_checkpoint:
            ray.train.report(metrics)
            return
        metrics = {**metrics, **run_data_metrics(self.ctx.get_experiment_name())}  # usable / skipped files
        progress = {**self.position.state(), **self.nonfinite.state()}
        tmp = checkpoint.save(self.g_eng, self.d_eng, self.step, self.cfg, self.rank, progress)
        with tmp:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp.name))

    def train_step(self, batch: torch.Tensor) -> dict[str, float]:
        """One GAN step with this (seed, rank, step)'s noise; counts a skipped update, restores when due."""
        t = self.cfg.train
        torch.manual_seed(faults.noise_seed(t.seed, self.rank, self.step))
        losses = gan_step(self.g_eng, self.d_eng, batch, self.cfg, step=self.step,
                          finite=faults.finite_check(self.rank, self.step + 1, self.nonfinite.restores))
        self.step += 1
        skipped = bool(losses.pop("skipped_d") + losses.pop("skipped_g"))
        if skipped:
            self.log(f"step {self.step}: non-finite loss on some rank, update skipped "
                     f"({self.nonfinite.streak + 1} in a row)")
        if self.nonfinite.after_step(skipped):
            self.restore_for_nonfinite()
        return {**losses, "nonfinite_steps": self.nonfinite.total}

    def fit(self) -> None:
        t = self.cfg.train
        started, first = time.perf_counter(), self.step
        batches = self.batches()
        while self.step < t.steps:
            losses = self.train_step(next(batches))
            metrics = {"step": self.step, **losses, **self.monitor.after_step(self.step, losses, self.g_eng, self.d_eng)}
            if self.step % t.log_every == 0 or self.step == t.steps:
                rate = (self.step - first) / (time.perf_counter() - started)
                shown = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in metrics.items() if k != "step")
                self.log(f"step {self.step}/{t.steps} {shown} ({rate:.2f} steps/s)")
            self.report(metrics, self.step % t.checkpoint_every == 0 or self.step == t.steps)
            faults.maybe_kill(self.rank, self.step)


def quiet_worker_logs() -> None:
    """Keep the driver's output to vidpred's progress: Ray Train logs every report at INFO, and
    DeepSpeed calls a torch.distributed function that warns it is deprecated on every step."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed")


def train_loop_per_worker(config: dict[str, Any]) -> None:
    quiet_worker_logs()
    trainer = Trainer(Config.model_validate(config))
    trainer.announce()
    trainer.build()
    trainer.restore()
    trainer.fit()
    trainer.monitor.close()
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
