"""What a worker does about faults: where it is in the data (:class:`Position`), non-finite losses
(:class:`NonFinitePolicy`), and the test-only hooks that inject faults (:class:`TestHooks`).

Non-finite losses: :func:`vidpred.train.step.gan_step` skips the update of an engine whose loss is NaN/inf
on any rank. After ``train.nonfinite_patience`` such steps in a row the worker restores the last
checkpoint and multiplies both learning rates by ``train.nonfinite_lr_factor``; after
``train.nonfinite_max_restores`` restores it gives up with an error. Every rank takes the same decisions
(the skip flags are all-reduced), so all of them restore together.

Test-only hooks (:class:`TestHooks`): read from the environment of the worker processes once, when a
worker starts (a local Ray's workers inherit the driver's); a run without them holds ``None`` and its step
pays one ``is None`` test. Never set them outside tests:

``VIDPRED_TEST_KILL=RANK:STEP:MARKER``
    the worker of rank RANK SIGKILLs its own process right after optimizer step STEP — once: it creates the
    file MARKER first and does nothing when MARKER exists (the restarted worker passes STEP again).
``VIDPRED_TEST_NAN=RANK:STEP,STEP,...``
    rank RANK sees its D loss as NaN at those optimizer steps (1-based, as logged), until the first restore
    for non-finite losses; the other ranks see their real losses, so the skip must come from agreement.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidpred.config import TrainConfig
from vidpred.train.step import all_finite

log = logging.getLogger("vidpred.train")
KILL_ENV, NAN_ENV = "VIDPRED_TEST_KILL", "VIDPRED_TEST_NAN"


@dataclass
class Position:
    """Where a worker is in its data: the epoch, and how many batches of it it has consumed."""
    epoch: int = 0
    batch: int = 0

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "epoch_batches": self.batch}

    @classmethod
    def from_state(cls, state: dict[str, Any], world: int | None = None) -> "Position":
        """The position a checkpoint's ``state`` records, for a worker of a group of ``world`` workers. Written
        by a group of another size (an elastic run, ``state["world"]``), the batches into the epoch are
        rescaled so that the new group has consumed as many clips of the epoch as the old one had (the
        micro-batch is the same at every size): which clips each worker gets from there is not the old
        stream's, since Ray Data splits the epoch among another number of workers."""
        batch = int(state.get("epoch_batches", 0))
        written_by = int(state.get("world", world or 1))
        if world is not None and written_by != world:
            batch = batch * written_by // world
        return cls(int(state.get("epoch", 0)), batch)


class NonFinitePolicy:
    """Counts skipped steps and decides when to restore; its counters travel in checkpoints."""

    def __init__(self, t: TrainConfig):
        self.patience, self.factor, self.max_restores = t.nonfinite_patience, t.nonfinite_lr_factor, \
            t.nonfinite_max_restores
        self.total = 0        # steps with a skipped update, over the whole run
        self.streak = 0       # such steps in a row, now
        self.restores = 0     # restores for non-finite losses so far
        self.lr_scale = 1.0   # product of the factors applied so far

    def state(self) -> dict[str, Any]:
        return {"nonfinite_steps": self.total, "nonfinite_restores": self.restores, "lr_scale": self.lr_scale}

    def load(self, state: dict[str, Any]) -> None:
        self.total = int(state.get("nonfinite_steps", 0))
        self.restores = int(state.get("nonfinite_restores", 0))
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.streak = 0

    def after_step(self, skipped: bool) -> bool:
        """Record one step; True when it is time to restore (the caller then calls :meth:`restored`)."""
        self.total += skipped
        self.streak = self.streak + 1 if skipped else 0
        if self.streak < self.patience:
            return False
        if self.restores >= self.max_restores:
            raise FloatingPointError(
                f"{self.streak} steps in a row with a non-finite loss after {self.restores} restores "
                f"(train.nonfinite_max_restores = {self.max_restores}): giving up")
        return True

    def restored(self, *engines) -> None:
        """Count a restore and lower the learning rate of every engine's optimizer by the factor."""
        self.restores += 1
        self.streak = 0
        self.lr_scale *= self.factor
        for engine in engines:
            for group in engine.optimizer.param_groups:
                group["lr"] *= self.factor


def sees_nan(loss) -> bool:
    """The finiteness check of a rank that sees its loss as NaN; it still takes part in the all-reduce, so
    every rank's decision stays the same (for tests)."""
    return all_finite(loss * float("nan"))


@dataclass(frozen=True)
class TestHooks:
    """Faults a test injects into a run (see the module): ``nan`` — rank → the 1-based optimizer steps at which
    it sees its D loss as NaN; ``kill`` — (rank, step, marker file) of the one SIGKILL."""

    __test__ = False  # not a pytest test class, whatever its name
    nan: dict[int, frozenset[int]] = field(default_factory=dict)
    kill: tuple[int, int, Path] | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "TestHooks | None":
        """The hooks ``VIDPRED_TEST_NAN`` / ``VIDPRED_TEST_KILL`` ask for; None when neither is set."""
        env = os.environ if env is None else env
        nan, kill = env.get(NAN_ENV), env.get(KILL_ENV)
        if not nan and not kill:
            return None
        nan_at, kill_at = {}, None
        if nan:
            rank, steps = nan.split(":", 1)
            nan_at = {int(rank): frozenset(int(s) for s in steps.split(","))}
        if kill:
            rank, step, marker = kill.split(":", 2)
            kill_at = (int(rank), int(step), Path(marker))
        return cls(nan=nan_at, kill=kill_at)

    def finite(self, rank: int, step: int, restores: int = 0):
        """The finiteness check for optimizer step ``step`` (1-based) on ``rank``: :func:`all_finite`, or
        :func:`sees_nan` where the hook poisons it (until the first restore for non-finite losses)."""
        if restores == 0 and step in self.nan.get(rank, ()):
            log.warning("[vidpred] %s: rank %d sees a NaN loss at step %d (test hook)", NAN_ENV, rank, step)
            return sees_nan
        return all_finite

    def after_step(self, rank: int, step: int) -> None:
        """The kill hook: SIGKILL this worker process after ``step`` (once, see the module)."""
        if self.kill is None or self.kill[:2] != (rank, step) or self.kill[2].exists():
            return
        self.kill[2].write_text(f"rank {rank} killed itself after step {step}\n")
        log.warning("[vidpred] %s: rank %d kills its process (pid %d) after step %d", KILL_ENV, rank, os.getpid(),
                    step)
        os.kill(os.getpid(), signal.SIGKILL)
