"""An exponential moving average of the generator's weights (``train.ema_decay``): what validation, ``vidpred
eval`` and ``vidpred export`` use when it is on, while the optimizer goes on stepping the raw weights.

GAN generators oscillate around what the discriminator currently punishes; the average over the last
~1 / (1 - decay) steps smooths that out (Karras et al. 2018; Yazıcı et al. 2019, "The unusual effectiveness
of averaging in GAN training"). Early on the average uses ``min(decay, (1 + n) / (10 + n))`` after ``n``
updates, so it is not held back by the random initial weights.

Each rank keeps the average of what its module holds: every weight whole at ZeRO 0-2 (there every rank's
module has the full weights, so all ranks validate alike), its own partition of each weight at ZeRO-3 (one
fp32 copy of G's parameters divided by the world size, the same division as ZeRO-3's own). The average is in
fp32 whatever ``train.precision`` (under bf16 it averages the bf16 working weights, whose rounding it smooths).

A checkpoint's ``generator.pt`` holds the average (whole, fp32, by parameter name), so whatever loads a
checkpoint's generator — eval, preview, export, a resumed run at any world size — gets it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.distributed as dist

from vidpred.train.reshard import zero3_partition


class GeneratorEMA:
    def __init__(self, engine, decay: float):
        self.decay = decay
        self.updates = 0
        self.z3 = engine.zero_optimization_stage() >= 3  # partitioned parameters
        self.module = engine.module
        self.params = dict(engine.module.named_parameters())
        self.shadow: dict[str, torch.Tensor] = {}
        self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        """Start the average over at the module's weights now (after a restore from weights alone)."""
        self.updates = 0
        self.shadow = {name: self._held(p).detach().float().clone() for name, p in self.params.items()}

    def _held(self, p: torch.nn.Parameter) -> torch.Tensor:
        """What this rank holds of ``p``: its ZeRO-3 partition, or the whole weight."""
        return p.ds_tensor if self.z3 else p.data

    def rate(self) -> float:
        """The decay of the next update."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """After an optimizer step: shadow ← d · shadow + (1 − d) · weights."""
        keep = self.rate()
        self.updates += 1
        for name, p in self.params.items():
            self.shadow[name].lerp_(self._held(p).float(), 1.0 - keep)

    @torch.no_grad()
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights whole, fp32 on the CPU, by name, with the module's buffers (not averaged: the
        generator's normalisations keep no running statistics). ZeRO-3: all-gathers each partition, so every
        rank calls it."""
        out: dict[str, torch.Tensor] = {}
        for name, p in self.params.items():
            local = self.shadow[name]
            if self.z3:
                world = dist.get_world_size(group=p.ds_process_group)
                whole = torch.empty(local.numel() * world, dtype=local.dtype, device=local.device)
                dist.all_gather_into_tensor(whole, local.contiguous(), group=p.ds_process_group)
                local = whole.narrow(0, 0, p.ds_numel).view(p.ds_shape)
            out[name] = local.detach().cpu().clone()
        for name, b in self.module.named_buffers():
            out[name] = b.detach().float().cpu().clone()
        return out

    @torch.no_grad()
    def load(self, weights: dict[str, torch.Tensor], updates: int) -> None:
        """Take a saved average (:meth:`state_dict`'s form, from any world size)."""
        missing = sorted(set(self.params) - set(weights))
        if missing:
            raise ValueError(f"saved average lacks {missing[:3]}")
        for name, p in self.params.items():
            whole = weights[name].float()
            held = zero3_partition(p, whole) if self.z3 else whole
            self.shadow[name].copy_(held.view_as(self.shadow[name]))
        self.updates = updates

    def _drop_gathered(self) -> None:
        """ZeRO-3: free the whole copies DeepSpeed keeps of gathered parameters (after a step it keeps every
        parameter under ``stage3_param_persistence_threshold`` elements gathered), so that the next forward
        gathers each from its partition, where the average was written (or the weights written back)."""
        if not self.z3:
            return
        gathered = [p for p in self.params.values() if p.ds_status.name == "AVAILABLE"]
        if gathered:
            gathered[0].partition(param_list=gathered, has_been_updated=False)

    @contextlib.contextmanager
    @torch.no_grad()
    def swapped_in(self) -> Iterator[None]:
        """The module runs with the averaged weights inside the block (validation), its own after it."""
        own = {name: self._held(p).detach().clone() for name, p in self.params.items()}
        try:
            for name, p in self.params.items():
                self._held(p).copy_(self.shadow[name].view_as(own[name]))
            self._drop_gathered()
            yield
        finally:
            for name, p in self.params.items():
                self._held(p).copy_(own[name])
            self._drop_gathered()
