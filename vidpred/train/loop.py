"""``train_loop_per_worker``: what each Ray Train worker runs.

build models → wrap in DeepSpeed engines → restore the latest checkpoint if Ray has one → take this
worker's shard → GAN steps → at each *report point* a progress line, TensorBoard and one ``ray.train.report``;
a checkpoint every ``checkpoint_every`` steps and at the end. Every worker runs the same steps (cycling over
its shard), so the collectives inside DeepSpeed always have all ranks present.

Nothing on the per-step path waits for the host or for Ray beyond what the non-finite guard needs (its two
flag all-reduces, :func:`vidpred.train.step.all_finite`): the loss terms of an interval are added up on the
device and read once per report point (:class:`Interval`). Report points are the first step of this
invocation, every ``log_every`` steps, every checkpoint and validation step, and the last step, the same on
every rank (Ray Train's report is a barrier). A report without a checkpoint goes out asynchronously
(``CheckpointUploadMode.ASYNC``): Ray Train's controller takes one report per worker per poll (every 2 s,
``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``) and a synchronous report blocks until it does — called every step, that
wait was most of each step (docs/training.md, "Throughput"). A checkpoint is written by every rank to a
local temp dir and, by default (``train.checkpoint_upload=async``), uploaded by Ray Train in the background
while the steps go on: it is registered once complete, never half. The report after a checkpoint is
synchronous: it returns once the controller has registered the checkpoint (a worker lost before that restarts
from the checkpoint before), so a slow upload holds the workers only for what is left of it at the next
report point.
Ray Tune's schedulers see every report (ASHA and PBT decide on validation results, which are report points).

Preemption: at each report point the ranks ask Ray Train whether a node of the run has been given notice
(:meth:`Trainer.preempted`); the first time one has, that report point writes a checkpoint, and training goes
on until the node goes. Ray Train then restarts the worker group from the latest checkpoint — that one —
counting the restart against ``FailureConfig.max_preemption_failures`` (unlimited), not ``train.max_failures``.
What is lost: the steps after the notice's report point. The notice must come at least a logging interval
plus a checkpoint write before the node goes (Ray Train polls for notices every 5 s).

``train.max_minutes``: the driver passes a wall-clock deadline (the command's start + the budget); at each
report point the ranks agree by one all-reduce whether it has passed, and the first that finds it has ends the
run there as if it were ``train.steps``: validation, final checkpoint, the usual summary.

Restored state: the step, both engines (weights, optimizers), the data position (epoch and batches consumed
in it: the worker skips that many batches of the restored epoch, whose order the driver pins, see
:mod:`vidpred.train.resume`), the non-finite counters; the noise of step k is seeded from (seed, rank, k).

Elastic runs (``train.min_workers``): Ray Train starts the worker group at the size the cluster has room
for and restarts it at another size when a node is lost or nodes come back. Each worker trains with
:meth:`vidpred.config.Config.at_world` of its group's size (the same global batch, by more micro-batches per
step); a checkpoint written by another number of workers is loaded resharded (:mod:`vidpred.train.reshard`)
and its data position is carried over as the clips the whole group had consumed of the epoch
(:meth:`vidpred.train.faults.Position.from_state`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
import warnings
from typing import Any

import ray.train
import torch

from vidpred.config import Config
from vidpred.data.pipeline import clip_batches
from vidpred.data.report import run_data_metrics
from vidpred.model import Discriminators, Generator, as_floats, count_parameters
from vidpred.storage import location
from vidpred.train import checkpoint, faults
from vidpred.train.ema import GeneratorEMA
from vidpred.train.engines import build_engines
from vidpred.train.monitor import Monitor
from vidpred.train.reshard import adam_step
from vidpred.train.step import add_into, all_finite, take_step

# A logger, not print: Ray Train's worker print patch both tees and logs a print, showing it twice.
log = logging.getLogger("vidpred.train")
PREFETCH_BATCHES = 2  # batches Ray Data prepares ahead of the step that takes them (its default: 1)
# Ray Train's controller collects one report per worker per poll, every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s
# by default): reports that come faster queue up, and a (synchronous) checkpoint report waits for the queue.
RAY_POLL_S = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", 2.0))
# on the progress line (every term is reported); rec_prior: the free-running path's L1, beside the teacher-forced one
SHOWN_LOSSES = ("rec", "rec_prior", "kl", "adv", "feat", "cycle", "g_total", "d_loss")


class Interval:
    """The steps since the last report point: every loss term summed on the device (no host sync per step),
    read once by :meth:`means`; the wall time from the end of the previous interval, so reports, validations
    and checkpoints count against the rate of the interval after them (the rate is what the run achieves)."""

    def __init__(self, started: float | None = None):
        self.started = time.perf_counter() if started is None else started
        self.sums: dict[str, torch.Tensor | float] = {}
        self.steps = 0

    def add(self, losses: dict[str, torch.Tensor | float]) -> None:
        add_into(self.sums, losses)
        self.steps += 1

    def means(self) -> dict[str, float]:
        return {key: total / self.steps for key, total in as_floats(self.sums).items()}

    def seconds(self, now: float) -> float:
        return max(now - self.started, 1e-9)


def _figure(x: float) -> str:
    """A rate with three significant digits (0.0812, 3.31, 26.5), whole numbers from 100 on."""
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def intra_op_threads(cpus_per_worker: float) -> int:
    """torch threads for a worker holding ``cpus_per_worker`` CPUs: the whole CPUs it holds, at least one."""
    return max(1, int(cpus_per_worker))


class Trainer:
    """One worker's training run; the methods name the steps."""

    def __init__(self, cfg: Config, deadline: float | None = None):
        self.deadline = deadline  # time.time() at which train.max_minutes runs out; None: no budget
        self.ctx = ray.train.get_context()
        self.rank = self.ctx.get_world_rank()
        self.world = self.ctx.get_world_size()
        self.run_cfg = cfg  # the run's config, as its checkpoints record it
        self.cfg = cfg.at_world(self.world)  # what this worker group trains with (an elastic run's batch split)
        self.step = 0
        self.position = faults.Position()  # of the data stream: what this worker has consumed
        self.nonfinite = faults.NonFinitePolicy(cfg.train)
        self.hooks = faults.TestHooks.from_env()  # None outside tests (faults injected by tests only)
        self.said_reports_queue = False
        self.checkpoint_pending = False  # a checkpoint was reported and the controller may not have taken it yet
        self.preemption_seen = False  # a notice this worker group has already checkpointed for

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
        # Ray sets OMP_NUM_THREADS from the CPUs a worker holds, but only once the process runs, after torch
        # may have sized its pool for the whole machine: workers sharing a box would oversubscribe it.
        torch.set_num_threads(intra_op_threads(self.cfg.train.cpus_per_worker))
        torch.manual_seed(self.cfg.train.seed)  # same initial weights on every rank
        mode = self.cfg.train.activation_checkpointing
        generator, discriminator = Generator(self.cfg.model, mode), Discriminators(self.cfg.model, mode)
        self.say_world()
        self.log(f"generator {count_parameters(generator):,} params, "
                 f"discriminators ({'+'.join(discriminator.names)}) {count_parameters(discriminator):,} params, "
                 f"ZeRO-{self.cfg.train.zero_stage}, {self.cfg.train.precision}, micro-batch {self.cfg.micro_batch} x "
                 f"{self.cfg.train.grad_accum}, activation checkpointing {mode}, "
                 f"{self.world} workers, {torch.get_num_threads()} torch thread(s) each")
        self.g_eng, self.d_eng = build_engines(generator, discriminator, self.cfg)
        decay = self.cfg.train.ema_decay
        self.ema = None if decay is None else GeneratorEMA(self.g_eng, decay)  # validated, saved for eval
        self.monitor = Monitor(self.cfg, self.ctx)  # TensorBoard (rank 0) and validation

    def say_world(self) -> None:
        """For an elastic run: the group's size in its range and how the global batch is kept."""
        t, run = self.cfg.train, self.run_cfg
        if not run.train.elastic:
            return
        batch = self.world * self.cfg.data.batch_size
        kept = (f"global batch {batch} kept: {self.cfg.data.batch_size} clips per worker per step in {t.grad_accum} "
                f"micro-batch{'es' if t.grad_accum > 1 else ''} of {self.cfg.micro_batch}"
                if batch == run.train.num_workers * run.data.batch_size
                else f"global batch {batch} instead of {run.train.num_workers * run.data.batch_size}: {self.world} "
                f"does not divide train.num_workers × train.grad_accum = "
                f"{run.train.num_workers * run.train.grad_accum}, so each worker keeps data.batch_size")
        self.log(f"elastic run at {self.world} of {run.train.min_workers}..{run.train.num_workers} workers: {kept}")

    def load(self, ckpt) -> dict[str, Any]:
        """Both engines and the step from ``ckpt``; returns its other progress counters."""
        with ckpt.as_directory() as directory:
            state = checkpoint.restore(self.g_eng, self.d_eng, directory, self.ema)
        self.step = state["step"]
        return state

    def restore(self) -> None:
        ckpt = ray.train.get_checkpoint()
        if ckpt is None and self.cfg.train.init_from:  # the run's own checkpoints win (a restart resumes them)
            path, fs = location(self.cfg.train.init_from, self.cfg.data)  # s3:// with data.s3_endpoint, as the data
            self.nonfinite.load(self.load(ray.train.Checkpoint(path, filesystem=fs)))
            self.log(f"started from {self.cfg.train.init_from} at step {self.step}")  # its data position is not ours
        elif ckpt is not None:
            state = self.load(ckpt)
            self.nonfinite.load(state)
            self.position = faults.Position.from_state(state, self.world)
            resharded = f", resharded from {state['world']} workers" if state["world"] != self.world else ""
            self.log(f"resumed from step {self.step} (data epoch {self.position.epoch}, "
                     f"{self.position.batch} batches into it{resharded}; Adam at step "
                     f"{adam_step(self.g_eng)} for G, {adam_step(self.d_eng)} for D)")

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
        """This worker's shard in micro-batches, epoch after epoch, from ``self.position`` on (the restored
        epoch's first ``position.batch`` micro-batches are read and dropped), until the step budget is spent."""
        shard = ray.train.get_dataset_shard("train")
        skip = self.position.batch
        while True:
            seen = 0
            for batch in clip_batches(shard, self.cfg.data, self.cfg.micro_batch, prefetch=PREFETCH_BATCHES,
                                      seed=self.cfg.train.seed + 1000 * self.position.epoch + self.rank):
                seen += 1
                if seen > skip:
                    self.position.batch = seen
                    yield batch
            if seen == 0:
                raise RuntimeError("this worker's shard holds no clips: every video was skipped or too short "
                                   "(see the warnings above), or there are fewer clips than workers")
            skip = 0
            self.position = faults.Position(self.position.epoch + 1, 0)

    def report(self, metrics: dict[str, Any]) -> None:
        """One ``ray.train.report`` of metrics alone: asynchronous (the step goes on while Ray's controller
        collects it), except right after a checkpoint: a synchronous report returns once the controller has
        taken the one before, so from then on the checkpoint is certainly registered and a lost worker
        restarts from it."""
        mode = ray.train.CheckpointUploadMode.SYNC if self.checkpoint_pending else ray.train.CheckpointUploadMode.ASYNC
        ray.train.report(metrics, checkpoint_upload_mode=mode)
        self.checkpoint_pending = False

    def save_checkpoint(self, metrics: dict[str, Any]) -> None:
        """A checkpoint, written by every rank to a local temp dir, reported with ``metrics`` (and the run's
        data account). ``train.checkpoint_upload=async``: Ray Train uploads it in a background thread and
        deletes the local copy, while the steps go on; the report is registered once the upload is complete
        (a worker lost before then restarts from the checkpoint before), and the next report, synchronous
        (:meth:`report`), waits for that. ``sync``: the upload happens inside this call."""
        self.checkpoint_pending = True
        metrics = {**metrics, **run_data_metrics(self.ctx.get_experiment_name())}  # usable / skipped files
        progress = {**self.position.state(), **self.nonfinite.state()}
        local = checkpoint.save(self.g_eng, self.d_eng, self.step, self.run_cfg, self.rank, progress, self.ema)
        ckpt = ray.train.Checkpoint.from_directory(str(local))
        if self.cfg.train.checkpoint_upload == "async":
            ray.train.report(metrics, checkpoint=ckpt, checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC,
                             delete_local_checkpoint_after_upload=True)
            return
        try:
            ray.train.report(metrics, checkpoint=ckpt)
        finally:
            shutil.rmtree(local, ignore_errors=True)

    def train_step(self, batches) -> dict[str, torch.Tensor | float]:
        """One optimizer step (``train.grad_accum`` micro-batches from ``batches``) with this (seed, rank,
        step)'s noise; counts a step with a skipped micro-batch, restores when due. Returns the loss terms,
        the mean over the micro-batches (0-d tensors on the device)."""
        t = self.cfg.train
        finite = all_finite if self.hooks is None else \
            self.hooks.finite(self.rank, self.step + 1, self.nonfinite.restores)
        losses = take_step(self.g_eng, self.d_eng, batches, self.cfg, self.rank, self.step, finite)
        if self.ema is not None:
            self.ema.update()
        losses.pop("skipped_d")
        left_out = round(float(losses.pop("skipped_g")) * t.grad_accum)  # a skipped D leaves G out too
        self.step += 1
        skipped = left_out > 0
        if skipped:
            what = "update skipped" if t.grad_accum == 1 else \
                f"{left_out} of {t.grad_accum} micro-batches left out of the update"
            self.log(f"step {self.step}: non-finite loss on some rank, {what} ({self.nonfinite.streak + 1} in a row)")
        if self.nonfinite.after_step(skipped):
            self.restore_for_nonfinite()
        return losses

    def at_report_point(self, first: int) -> bool:
        """Whether this step reports (see the module): a function of the step alone, the same on every rank."""
        t, s = self.cfg.train, self.step
        return (s == first + 1 or s >= t.steps or s % t.log_every == 0 or s % t.checkpoint_every == 0
                or (self.monitor.clips is not None and s % t.val_every == 0))

    def out_of_time(self) -> bool:
        """Whether ``train.max_minutes`` has run out on any rank (one all-reduce, at report points only, so
        that every rank ends at the same step)."""
        if self.deadline is None:
            return False
        late = torch.tensor([float(time.time() >= self.deadline)], device=self.g_eng.device)
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(late, op=torch.distributed.ReduceOp.MAX)
        return bool(late.item())

    def progress(self, metrics: dict[str, Any], first: bool) -> None:
        """The progress line: the main losses, validation beside copy-last, and the interval's true rate."""
        t = self.cfg.train
        hidden = {"cycle"} if not self.cfg.loss.w_cycle else set()
        hidden |= {"rec_prior"} if self.cfg.loss.gan_paths != "both" else set()
        shown = [f"{k}={metrics[k]:.4f}" for k in SHOWN_LOSSES if k in metrics and k not in hidden]
        if metrics.get("nonfinite_steps"):
            shown.append(f"nonfinite_steps={metrics['nonfinite_steps']}")
        if "val_psnr" in metrics:
            shown.append(f"| val psnr {metrics['val_psnr']:.2f} dB (copy-last {metrics['val_copy_last_psnr']:.2f}) "
                         f"ssim {metrics['val_ssim']:.3f} ({metrics['val_copy_last_ssim']:.3f}) "
                         f"sharpness {metrics['val_sharpness']:.2f}")
        if first:
            rate = f"first step {metrics['interval_seconds']:.2f} s"
        else:
            rate = f"{_figure(metrics['steps_per_s'])} steps/s, {_figure(metrics['clips_per_s'])} clips/s"
            if t.use_gpu:
                rate += f", {_figure(metrics['clips_per_s'] / self.world)} clips/s per GPU"
        self.log(f"step {self.step}/{t.steps} {' '.join(shown)} ({rate})")

    def end_interval(self, interval: Interval, now: float, first: bool, last: bool,
                     checkpoint_now: bool = False) -> None:
        """A report point: the interval's means and rate, validation when due, progress line, TensorBoard,
        then a report, or a checkpoint (every ``checkpoint_every`` steps, at the last step, and when
        ``checkpoint_now``: a preemption notice)."""
        t = self.cfg.train
        seconds = interval.seconds(now)
        means = interval.means()
        metrics: dict[str, Any] = {
            "step": self.step, **means, "nonfinite_steps": self.nonfinite.total, "interval_steps": interval.steps,
            "interval_seconds": seconds, "steps_per_s": interval.steps / seconds,
            "clips_per_s": interval.steps * self.cfg.data.batch_size * self.world / seconds}
        if self.monitor.due(self.step, last):
            with self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext():
                metrics.update(self.monitor.validate(self.step, self.g_eng))
        self.monitor.interval(self.step, means, self.g_eng, self.d_eng)
        self.progress(metrics, first)
        if interval.steps >= t.log_every and seconds < RAY_POLL_S and not self.said_reports_queue:
            self.said_reports_queue = True
            self.log(f"a logging interval took {seconds:.2f} s, less than the {RAY_POLL_S:g} s in which Ray Train "
                     f"collects a report: reports queue up and each checkpoint waits for them; raise "
                     f"train.log_every (now {t.log_every}) to about {math.ceil(t.log_every * RAY_POLL_S / seconds)}")
        if self.step % t.checkpoint_every == 0 or last or checkpoint_now:
            self.save_checkpoint(metrics)
        else:
            self.report(metrics)

    def preempted(self) -> bool:
        """Whether a node of this run has been given notice (Ray Train's ``get_preemption_info``: a node Ray
        Core marks as draining for preemption — a spot reclaim, or a SIGTERM to ``ray start --block``, which
        drains its node for ``RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S`` before it stops), said once per notice.
        A barrier across the ranks: called at report points only, which every rank reaches together."""
        info = ray.train.get_preemption_info()
        if info is None or self.preemption_seen:
            return False
        self.preemption_seen = True
        left = "" if not info.deadline_ms else f", {max(info.deadline_ms / 1000 - time.time(), 0):.0f} s before it goes"
        self.log(f"step {self.step}: preemption notice for node(s) {', '.join(info.preempted_node_to_ranks)} "
                 f"(ranks {sorted(r for ranks in info.preempted_node_to_ranks.values() for r in ranks)}{left}): "
                 "checkpointing now; the run resumes from this step")
        return True

    def fit(self) -> None:
        t = self.cfg.train
        first = self.step
        batches = self.batches()
        interval = Interval()
        while self.step < t.steps:
            interval.add(self.train_step(batches))
            last = False
            if self.at_report_point(first):
                now = time.perf_counter()
                last = self.step >= t.steps or self.out_of_time()
                if last and self.step < t.steps:
                    self.log(f"step {self.step}: train.max_minutes = {t.max_minutes:g} is spent: ending the run "
                             f"here ({t.steps - self.step} of train.steps = {t.steps} not taken)")
                self.end_interval(interval, now, first=self.step == first + 1, last=last,
                                  checkpoint_now=self.preempted())
                interval = Interval(now)
            if self.hooks is not None:
                self.hooks.after_step(self.rank, self.step)
            if last:
                break


def quiet_worker_logs() -> None:
    """Keep the driver's output to vidpred's progress: Ray Train logs every report at INFO, and
    DeepSpeed calls a torch.distributed function that warns it is deprecated on every step."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed")


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """``config``: ``{"config": the run's Config as plain data, "deadline": time.time() when
    train.max_minutes runs out, or None}`` (:func:`loop_config`)."""
    quiet_worker_logs()
    trainer = Trainer(Config.model_validate(config["config"]), deadline=config.get("deadline"))
    trainer.announce()
    trainer.build()
    trainer.restore()
    trainer.fit()
    trainer.monitor.close()
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def loop_config(cfg: Config, started: float | None = None) -> dict[str, Any]:
    """The ``train_loop_config`` of a run: the config, and the deadline of ``train.max_minutes`` counted from
    ``started`` (a ``time.time()``; the command's start)."""
    budget = cfg.train.max_minutes
    deadline = None if budget is None else (time.time() if started is None else started) + 60 * budget
    return {"config": cfg.model_dump(mode="json"), "deadline": deadline}

