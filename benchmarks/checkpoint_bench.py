"""What a checkpoint costs the workers: ``vidpred train`` to the S3 test server with a checkpoint at every
logging interval, uploaded synchronously or asynchronously (``train.checkpoint_upload``), against the same
run without checkpoints.

Each run is ``vidpred train`` as the CLI builds it (the prepared 64×64 clip cache of ``train_bench.py``),
``train.storage_path`` on a SeaweedFS S3 server started here on 127.0.0.1 (the tests' helper), 2 workers at
ZeRO-2. An interval's seconds come from its progress line (``log_every`` / its steps/s); a checkpoint at the
end of an interval, or the wait for it at the next report point, counts against the interval after it. So
the stall per checkpoint = median interval seconds with a checkpoint every interval − median interval seconds
without, the first ``--warmup-intervals`` left out. The checkpoint's size is read from the bucket.

    python benchmarks/checkpoint_bench.py [--model base] [--steps 15] [--log-every 3] [--workdir DIR]

Writes a table on stdout and benchmarks/results/checkpoint_bench.json. Goal (issue 17): an S3 checkpoint does
not hold the workers for the whole upload.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the SeaweedFS helper the tests use
sys.path.insert(0, str(Path(__file__).parent))

from train_bench import train_row, workspace  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "checkpoint_bench.json"
BUCKET = "ckpt-bench"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="base", help="model.size (base: a checkpoint of ~0.5 GB, one of tiny ~15 MB)")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--log-every", type=int, default=3, help="steps per interval; a checkpoint ends each")
    p.add_argument("--warmup-intervals", type=int, default=1)
    p.add_argument("--modes", default="none,sync,async", help="none (no checkpoint), sync, async")
    p.add_argument("--workdir", type=Path, help="clip cache, S3 data, runs (default: a temp dir)")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args()


def checkpoint_bytes(client, run: str) -> int | None:
    """Bytes of the run's newest checkpoint folder in the bucket."""
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"runs/{run}/"):
        for obj in page.get("Contents", []):
            parts = obj["Key"].split("/")
            if len(parts) > 3 and parts[2].startswith("checkpoint_"):
                sizes[parts[2]] = sizes.get(parts[2], 0) + obj["Size"]
    return sizes[max(sizes)] if sizes else None


def main() -> None:
    from s3server import SeaweedFS

    args = parse()
    workdir, env, data = workspace(args.workdir, "vidpred-ckpt-bench-")
    (workdir / "seaweedfs").mkdir(exist_ok=True)
    server = SeaweedFS(workdir / "seaweedfs")
    server.start()
    rows = []
    try:
        server.make_bucket(BUCKET)
        env.update(server.env())
        for mode in args.modes.split(","):
            every = args.log_every if mode != "none" else args.steps
            extra = ["--set", f"train.checkpoint_every={every}",
                     "--set", f"train.checkpoint_upload={'sync' if mode == 'sync' else 'async'}"]
            row = train_row(args.model, 2, 2, args.steps, args.log_every, args.warmup_intervals, data, env,
                            f"s3://{BUCKET}/runs", extra)
            steady = row["intervals"][args.warmup_intervals:] or row["intervals"]
            row.update(mode=mode, interval_s=statistics.median(args.log_every / i["steps_per_s"] for i in steady),
                       checkpoint_bytes=checkpoint_bytes(server.client(), row["name"]))
            rows.append(row)
            print(f"[bench] {mode}: median interval {row['interval_s']:.2f} s, {row['steady_clips_per_s']:.2f} clips/s",
                  flush=True)
    finally:
        server.stop()
    base = next((r["interval_s"] for r in rows if r["mode"] == "none"), None)
    print("| checkpoint upload | median interval s | stall per checkpoint s | clips/s | checkpoint MB |")
    print("|---|---|---|---|---|")
    for r in rows:
        stall = None if base is None or r["mode"] == "none" else r["interval_s"] - base
        r["stall_s"] = stall
        size = r["checkpoint_bytes"]
        print(f"| {r['mode']} | {r['interval_s']:.2f} | {'—' if stall is None else f'{stall:.2f}'} | "
              f"{r['steady_clips_per_s']:.3f} | {'—' if size is None else f'{size / 2**20:.0f}'} |")
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "model": args.model, "workers": 2, "zero": 2,
              "steps": args.steps, "log_every": args.log_every, "load_average": os.getloadavg(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
