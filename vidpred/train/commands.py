"""``vidpred plan`` (the memory planner) and ``vidpred export`` (a checkpoint's generator, fp32, no DeepSpeed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidpred import config as config_mod


def _plan(args: argparse.Namespace) -> int:
    from vidpred.train import plan

    overrides = list(args.set)
    if args.model:
        overrides.append(f"model.size={args.model}")
    if args.resolution is not None:  # 0 is a value to refuse, not an absent flag
        overrides += [f"data.height={args.resolution}", f"data.width={args.resolution}"]
    if args.workers is not None:
        overrides.append(f"train.num_workers={args.workers}")
    if args.precision:
        overrides.append(f"train.precision={args.precision}")
    cfg = config_mod.load(args.config, overrides)
    try:
        memory = plan.parse_bytes(args.gpu_mem)
    except ValueError as exc:
        raise config_mod.ConfigError(f"--gpu-mem: {exc}") from None
    if memory <= 0:
        raise config_mod.ConfigError(f"--gpu-mem {args.gpu_mem!r}: must be more than 0 bytes, e.g. 24GiB")
    world = cfg.train.num_workers
    g, d = plan.param_counts(cfg)
    print(f"model {cfg.model.size}: generator {g:,} + discriminators {d:,} params; {cfg.data.height}x{cfg.data.width}, "
          f"{cfg.data.context}+{cfg.data.future} frames, {cfg.train.precision}, {world} workers x data.batch_size="
          f"{cfg.data.batch_size} (global batch {world * cfg.data.batch_size}), {memory / plan.GiB:.1f} GiB per device")
    tried = plan.candidates(cfg, world)
    try:
        chosen = plan.choose(cfg, memory, world, tried)
    except MemoryError as exc:
        print(plan.format_table(plan.summary(tried, memory), memory))
        print(f"vidpred plan: {exc}")
        return 1
    print(plan.format_table(plan.summary(tried, memory), memory, chosen))
    print(f"chosen: {chosen.describe()}: {chosen.total / plan.GiB:.2f} GiB per device, the fastest of "
          f"{sum(e.total <= memory for e in tried)} layouts that fit (of {len(tried)}). "
          f"train.zero_stage=auto applies it; by hand: --set train.zero_stage={chosen.stage} "
          f"--set train.offload_optimizer={str(chosen.offload).lower()} --set train.grad_accum={chosen.grad_accum} "
          f"--set train.activation_checkpointing={chosen.checkpointing}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from vidpred.train.export import export

    out = export(args.checkpoint, args.out, config_mod.load(args.config, args.set).data, force=args.force)
    print(f"wrote the fp32 generator of {args.checkpoint} to {out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="per-GPU memory and estimated step time at each micro-batch x activation "
                       "checkpointing x ZeRO stage x offload for the configured batch, and the fastest that fits")
    p.add_argument("--config", help="YAML config (as for train)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--model", help="model.size preset: tiny, base, large")
    p.add_argument("--resolution", type=int, help="square frame size (data.height = data.width)")
    p.add_argument("--workers", type=int, help="train.num_workers (devices)")
    p.add_argument("--precision", choices=["fp32", "bf16"])
    p.add_argument("--gpu-mem", default="24GiB", help="memory per device, e.g. 24GiB, 80GB")
    p.set_defaults(func=_plan)

    e = sub.add_parser("export", help="a checkpoint's generator as one fp32 file that loads without DeepSpeed")
    e.add_argument("checkpoint", help="checkpoint directory (local path or storage URI such as s3://…)")
    e.add_argument("out", help="output file, e.g. generator.pt (never inside a checkpoint)")
    e.add_argument("--force", action="store_true", help="replace OUT if it exists")
    e.add_argument("--config", type=Path, help="YAML config; its data section gives the S3 settings")
    e.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE",
                   help="e.g. --set data.s3_endpoint=http://127.0.0.1:8333 for a checkpoint on S3")
    e.set_defaults(func=_export)
