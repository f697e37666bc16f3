"""What an elastic run's checkpoints cost: both engines' state gathered whole (vidpred.train.reshard.full_state)
and written as reshard.pt beside DeepSpeed's shards, against the same checkpoint of a fixed run.

Two gloo ranks on 127.0.0.1 (vidpred.train.selfcheck), fresh engines of ``--size`` at ZeRO-2 and ZeRO-3 fp32:
the gather alone, then ``checkpoint.save`` to a local temp dir with train.min_workers set (elastic) and
without (fixed), each timed between barriers. Prints and writes benchmarks/results/reshard_bench.json with
the load average it ran under.

    python benchmarks/reshard_bench.py --size base
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "reshard_bench.json"


def _rank(rank: int, world: int, port: int, size: str, out: str) -> None:
    import torch.distributed as dist

    from vidpred import config
    from vidpred.train import checkpoint, reshard
    from vidpred.train.selfcheck import fresh_engines, init_rank

    init_rank(rank, world, port)
    results = {}
    for stage in (2, 3):
        cfg = config.load(overrides=[f"model.size={size}", f"train.zero_stage={stage}", "train.num_workers=2",
                                     "train.min_workers=1"])
        fixed = cfg.model_copy(update={"train": cfg.train.model_copy(update={"min_workers": None})})
        g, d, _ = fresh_engines(cfg)
        dist.barrier()
        t = time.perf_counter()
        reshard.full_state(g), reshard.full_state(d)
        dist.barrier()
        row = {"gather_s": time.perf_counter() - t}
        for name, c in (("elastic", cfg), ("fixed", fixed)):
            t = time.perf_counter()
            part = checkpoint.save(g, d, 1, c, rank)
            dist.barrier()
            row[f"save_{name}_s"] = time.perf_counter() - t
            if rank == 0 and name == "elastic":
                row["reshard_mb"] = os.path.getsize(part / checkpoint.RESHARD_FILE) / 1e6
            shutil.rmtree(part)
        results[f"zero{stage}"] = row
        del g, d
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    from vidpred.train.selfcheck import spawn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="base", choices=["tiny", "base", "large"])
    args = ap.parse_args()
    tmp = OUT.with_suffix(".part")
    spawn(_rank, 2, args.size, str(tmp))
    rows = json.loads(tmp.read_text())
    tmp.unlink()
    for layout, r in rows.items():
        print(f"{layout}: gather {r['gather_s']:.2f} s, checkpoint write {r['save_elastic_s']:.2f} s elastic vs "
              f"{r['save_fixed_s']:.2f} s fixed, reshard.pt {r['reshard_mb']:.0f} MB")
    OUT.write_text(json.dumps({"when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                               "size": args.size, "loadavg": os.getloadavg(), "ranks": 2, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
