"""A DeepSpeed engine's training state in a form that does not depend on the world size, and back.

DeepSpeed's own checkpoint (``engine.save_checkpoint``) is laid out for the world size that wrote it: under
ZeRO-1/2 (and bf16 at ZeRO-0) each rank holds a flat slice of the fp32 master weights and of Adam's moments,
under ZeRO-3 the module's parameters too. An elastic run (``train.min_workers``) may restart at another size,
so its checkpoints also carry, per engine, what :func:`full_state` gathers: every parameter's fp32 master
weight and Adam moments (``exp_avg``, ``exp_avg_sq``) whole, by parameter name, with the optimizer's step
count and learning rates. :func:`load_full_state` scatters that into a fresh engine of any world size at any
ZeRO stage 0-3, which cuts each tensor into the slices the new engine's partitions own.

DeepSpeed's universal checkpoint does the same through an offline conversion of the merged shards
(``ds_to_universal``) and a config flag fixed before the engine exists; gathering at save time keeps one
load path for both engines at every stage, and reads nothing a node would have to download whole first.

Both functions run collectives (all-reduce / all-gather per parameter): every rank calls them, in the same
order. The optimizer must be torch's Adam/AdamW (vidpred's client optimizer): its state is ``step``,
``exp_avg``, ``exp_avg_sq`` and nothing else.
"""

from __future__ import annotations

from typing import Any

import torch

MOMENTS = ("exp_avg", "exp_avg_sq")


def base_optimizer(engine) -> torch.optim.Optimizer:
    """The torch optimizer under DeepSpeed's wrappers (ZeRO-1/2, ZeRO-3, bf16), whose state Adam keeps."""
    opt = engine.optimizer
    while not isinstance(opt, torch.optim.Optimizer):
        opt = opt.optimizer
    return opt


def adam_step(engine) -> int:
    """Adam's step count in ``engine`` (0 before its first step): what a restore must carry over."""
    steps = [float(state["step"]) for state in base_optimizer(engine).state.values() if "step" in state]
    return int(max(steps, default=0.0))


def _ensure_adam_state(engine) -> torch.optim.Optimizer:
    """Adam's state for every tensor the optimizer steps, zero where it has not stepped yet (torch creates it
    at the first step, and DeepSpeed links its per-parameter views of it to the flat partitions only then), so
    that a fresh engine can be read and written like a trained one."""
    opt = base_optimizer(engine)
    # ZeRO-3 puts its flat fp32 partitions into the param groups only for the step itself
    stepped = [p for group in opt.param_groups for p in group["params"]]
    stepped += getattr(engine.optimizer, "fp32_partitioned_groups_flat", [])
    for p in stepped:
        state = opt.state[p]
        state.setdefault("step", torch.tensor(0.0))
        for key in MOMENTS:
            if key not in state:
                state[key] = torch.zeros_like(p)
    link = getattr(engine.optimizer, "_lazy_init_hp_params_optimizer_state", None)
    if link is not None:
        if hasattr(engine.optimizer, "_hp_optimizer_states_linked"):
            engine.optimizer._hp_optimizer_states_linked = False  # relink: the state may be new
        link()
    return opt


def _kind(p: torch.nn.Parameter) -> str:
    """How DeepSpeed holds ``p``'s fp32 master and moments: ``z3`` (ZeRO-3 partitions), ``fragment`` (flat
    slices: ZeRO-1/2, bf16 at ZeRO-0) or ``plain`` (fp32 ZeRO-0: the parameter and torch's state for it)."""
    if hasattr(p, "ds_id"):
        return "z3"
    if hasattr(p, "_hp_mapping"):
        return "fragment"
    return "plain"


def full_state(engine) -> dict[str, Any]:
    """{"weights": {name: fp32 tensor}, "exp_avg": {...}, "exp_avg_sq": {...}, "step": Adam's step count,
    "lr": [per param group], "global_steps": DeepSpeed's counter}; whole tensors on the CPU, the same on every
    rank. Buffers of the module are in "weights" too."""
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    opt = _ensure_adam_state(engine)
    out: dict[str, Any] = {"weights": {}, **{k: {} for k in MOMENTS}}
    for name, p in engine.module.named_parameters():
        if _kind(p) == "plain":
            values = [p.detach(), *(opt.state[p][k] for k in MOMENTS)]
        else:
            values = [safe_get_full_fp32_param(p), *(safe_get_full_optimizer_state(p, k) for k in MOMENTS)]
        for key, value in zip(("weights", *MOMENTS), values, strict=True):
            out[key][name] = value.detach().float().cpu().clone()
    for name, b in engine.module.named_buffers():
        out["weights"][name] = b.detach().float().cpu().clone()
    out["step"] = adam_step(engine)
    out["lr"] = [group["lr"] for group in opt.param_groups]
    out["global_steps"] = int(engine.global_steps)
    return out


def zero3_partition(p, whole: torch.Tensor) -> torch.Tensor:
    """This rank's ZeRO-3 partition of ``whole``: the flat tensor padded with zeros to world × partition size,
    as DeepSpeed pads the last partition (its own ``set_full_hp_param`` cuts without the padding and fails on
    a parameter whose size the world size does not divide)."""
    import torch.distributed as dist

    n = p.ds_tensor.numel()
    world, rank = dist.get_world_size(group=p.ds_process_group), dist.get_rank(group=p.ds_process_group)
    padded = torch.zeros(n * world, dtype=torch.float32)
    padded[: whole.numel()] = whole.flatten()
    return padded.narrow(0, n * rank, n)


def load_full_state(engine, state: dict[str, Any]) -> None:
    """Write :func:`full_state`'s output into ``engine`` (any world size, same module and ZeRO stage family):
    the module's weights, the fp32 masters, Adam's moments and step, the learning rates. Refuses (ValueError)
    a state whose parameter names or shapes are not the module's."""
    from deepspeed.utils import (safe_set_full_fp32_param, safe_set_full_optimizer_state,
                                 safe_set_local_fp32_param, safe_set_local_optimizer_state)

    opt = _ensure_adam_state(engine)
    params = dict(engine.module.named_parameters())
    if set(params) != set(state["weights"]) - {n for n, _ in engine.module.named_buffers()}:
        missing = sorted(set(params) - set(state["weights"]))
        extra = sorted(set(state["weights"]) - set(params) - {n for n, _ in engine.module.named_buffers()})
        raise ValueError(f"saved state does not fit the module (missing {missing[:3]}, unknown {extra[:3]})")
    for name, p in params.items():
        weight, moments = state["weights"][name], [state[k][name] for k in MOMENTS]
        kind = _kind(p)
        shape = tuple(p.ds_shape) if kind == "z3" else tuple(p.shape)
        if tuple(weight.shape) != shape:
            raise ValueError(f"{name}: saved shape {tuple(weight.shape)}, the module's {shape}")
        if kind == "z3":
            local = zero3_partition(p, weight)
            p.ds_tensor.data.copy_(local.to(p.ds_tensor.device, p.ds_tensor.dtype))
            safe_set_local_fp32_param(p, local.to(p.ds_tensor.device))
            for key, value in zip(MOMENTS, moments, strict=True):
                safe_set_local_optimizer_state(p, zero3_partition(p, value).to(p.ds_tensor.device), key)
            continue
        p.data.copy_(weight.to(p.device, p.dtype))
        if kind == "fragment":
            safe_set_full_fp32_param(p, weight.to(p.device))
            for key, value in zip(MOMENTS, moments, strict=True):
                safe_set_full_optimizer_state(p, value.to(p.device), key)
        else:
            for key, value in zip(MOMENTS, moments, strict=True):
                opt.state[p][key].copy_(value.to(p.device))
    for name, b in engine.module.named_buffers():
        b.data.copy_(state["weights"][name].to(b.device, b.dtype))
    for s in opt.state.values():
        s["step"] = torch.tensor(float(state["step"]))
    for group, lr in zip(opt.param_groups, state["lr"], strict=True):
        group["lr"] = lr
    engine.global_steps = state["global_steps"]
