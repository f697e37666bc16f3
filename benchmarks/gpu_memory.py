"""Peak GPU memory of one real GAN step (``vidpred.train.step.gan_step``: G forward over the clip, D step,
G step through the frozen D, AdamW states for both) per model size, resolution and batch, without ZeRO.

    python benchmarks/gpu_memory.py --sizes base large --res 256 --batches 1 2

It answers "does this fit one 24 GB GPU without ZeRO?" with measured bytes (torch.cuda.max_memory_allocated),
split into what ZeRO can shard (parameters, gradients, Adam states: 16 bytes per parameter in fp32) and the
rest (activations, which ZeRO does not shard). Writes ``benchmarks/results/gpu_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vidpred import config as config_mod
from vidpred.model import Discriminators, Generator, count_parameters
from vidpred.train.engines import local_engines
from vidpred.train.step import gan_step

GiB = 2**30


def measure(size: str, res: int, batch: int) -> dict:
    cfg = config_mod.load(overrides=[f"model.size={size}", f"data.height={res}", f"data.width={res}",
                                     f"data.batch_size={batch}"])
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    g, d = Generator(cfg.model), Discriminators(cfg.model)
    params = count_parameters(g) + count_parameters(d)
    g_eng, d_eng = local_engines(g, d, cfg, "cuda")
    clips = torch.randint(0, 256, (batch, cfg.data.clip_frames, res, res, 3), dtype=torch.uint8)
    row = {"size": size, "res": res, "batch": batch, "frames": cfg.data.clip_frames, "params": params,
           "shardable_gib": round(16 * params / GiB, 2)}
    try:
        for _ in range(2):  # the second step holds the Adam states from the first
            torch.cuda.synchronize()
            started = time.perf_counter()
            gan_step(g_eng, d_eng, clips, cfg)
            torch.cuda.synchronize()
        row.update(peak_gib=round(torch.cuda.max_memory_allocated() / GiB, 2),
                   step_s=round(time.perf_counter() - started, 3))
        row["activations_gib"] = round(row["peak_gib"] - row["shardable_gib"], 2)
    except torch.OutOfMemoryError:
        row["peak_gib"] = "OOM"
    del g_eng, d_eng, g, d
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["base", "large"])
    p.add_argument("--res", nargs="+", type=int, default=[256])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 2])
    args = p.parse_args()
    rows = []
    for size in args.sizes:
        for res in args.res:
            for batch in args.batches:
                rows.append(measure(size, res, batch))
                print(json.dumps(rows[-1]), flush=True)
    out = Path(__file__).resolve().parent / "results" / "gpu_memory.json"
    out.write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows},
                              indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
