"""Start-up at BDD100K scale: from ``vidpred train`` to its first optimizer step, and the driver's peak memory.

For each dataset size (1K, 10K, 100K videos; 7 train to 1 val, as BDD100K's 70K/10K) and each place (a local
tree, the SeaweedFS S3 server), ``vidpred train`` runs as a subprocess twice: first with an empty cache dir
(cold probe index: every file probed), then again with the same cache dir (warm index: a dataset seen
before). Each run trains one step (``train.steps=1``, ``train.log_every=1``, so the first step prints a
``step 1/`` line); the time to that line from the command's start is the figure, with the moments the data
account, Ray and the first step were reached. The driver's peak RSS is its ``VmHWM`` read from ``/proc``
every 50 ms while it runs (only the driver: the Ray processes it starts are not counted).

The videos: ``--sources`` short H.264 clips from vidpred's synthetic generator (``--video-size``, 1.6 s at
30 fps), linked under many names. Locally a tree of hard links (one inode serves up to 65,000 links on ext4;
8 sources serve 100K names); on S3 each name is an object uploaded with boto3 (16 at a time; objects already
there with the right size are kept, so a rerun with the same ``--work`` uploads only what is missing). The
S3 server is a ``weed mini`` started by the bench on free ports of 127.0.0.1 (the tests' helper,
``tests/s3server.py``), its data kept in ``--work``. ``--code DIR`` runs another checkout's vidpred (e.g. the
main branch, to measure what a change saved).

    python benchmarks/startup_bench.py --sizes 1000,10000 --where local,s3
    python benchmarks/startup_bench.py --sizes 100000 --where local --runs cold,warm

Writes a table on stdout and ``benchmarks/results/startup_bench.json`` (every run, with its milestones).
Goal (issue 12): under 2 minutes to the first step at 100K videos with a warm index.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the SeaweedFS helper the tests use

GOAL_S = 120.0
SPLITS = ("train", "val")
MILESTONES = {  # name → what the driver prints when it gets there
    "account_s": re.compile(r"\[vidpred\] data train: "),
    "ray_up_s": re.compile(r"\[vidpred\] training \S+: "),
    "first_step_s": re.compile(r"step 1/"),
}
INDEX_LINE = re.compile(r"probe index \S+: (\d+) files known unchanged, (\d+) probed")


def split_counts(n: int) -> dict[str, int]:
    val = max(n // 8, 1)
    return {"train": n - val, "val": val}


def names(n: int) -> list[tuple[str, int]]:
    """(key under the root, source number) of every video of an ``n``-video tree."""
    out = []
    for split, count in split_counts(n).items():
        out += [(f"videos/{split}/v{k:06d}.mov", k) for k in range(count)]
    return out


def make_sources(work: Path, count: int, size: tuple[int, int]) -> list[Path]:
    from vidpred.data.synth import render_clip

    folder = work / f"sources-{size[0]}x{size[1]}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"s{i}.mov"
        if not path.exists():
            render_clip(path, seconds=1.6, fps=30, size=size, seed=i)
        paths.append(path)
    return paths


def local_tree(work: Path, n: int, sources: list[Path]) -> str:
    root = work / f"local-{n}"
    for key, k in names(n):
        path = root / key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(sources[k % len(sources)], path)
    return str(root)


def s3_tree(server, n: int, sources: list[Path], bucket: str = "startup-bench") -> tuple[str, dict]:
    """Upload the ``n``-video tree under s3://bucket/n<N>/ (keeping objects already there); returns its URI and
    what the upload took."""
    client = server.client()
    server.make_bucket(bucket)
    prefix = f"n{n}"
    bodies = [p.read_bytes() for p in sources]
    there: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        there.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    todo = [(f"{prefix}/{key}", bodies[k % len(bodies)]) for key, k in names(n)
            if there.get(f"{prefix}/{key}") != len(bodies[k % len(bodies)])]
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kb: client.put_object(Bucket=bucket, Key=kb[0], Body=kb[1]), todo))
    return f"s3://{bucket}/{prefix}", {"uploaded": len(todo), "upload_s": round(time.perf_counter() - started, 1)}


class DriverMemory:
    """Peak RSS (``VmHWM``) of one process, read every 50 ms until it exits, and its RSS at a moment."""

    def __init__(self, pid: int):
        self.pid, self.peak_kb = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def read(self) -> tuple[int, int]:
        """(VmHWM, VmRSS) in kB; zeros once the process is gone."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0, 0
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        kb = lambda name: int(fields.get(name, "0 kB").split()[0])  # noqa: E731
        return kb("VmHWM"), kb("VmRSS")

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_kb = max(self.peak_kb, self.read()[0])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_train(root: str, cache: Path, name: str, env: dict, timeout: float, log: Path, code: Path) -> dict:
    """One ``vidpred train`` of one step, run in ``code`` (Ray puts the driver's working directory first on
    its workers' path: from elsewhere they would import that directory's vidpred, not the driver's); the
    moments it printed its milestones, its driver's memory."""
    command = ["vidpred", "train", "--set", f"data.uri={root}", "--set", f"data.cache_dir={cache}",
               "--set", "train.steps=1", "--set", "train.log_every=1", "--set", "train.val_every=1000",
               "--set", "train.checkpoint_every=1", "--set", "train.tensorboard=false",
               "--set", f"train.name={name}", "--set", f"train.storage_path={cache / 'runs'}"]
    started = time.perf_counter()
    proc = subprocess.Popen(["nice", "-n", "19", *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, cwd=code, text=True, errors="replace", start_new_session=True)
    memory = DriverMemory(proc.pid)
    out: dict = {"command": " ".join(command)}
    killer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))  # the run and the Ray it started
    killer.start()
    with open(log, "w") as f:
        for line in proc.stdout:
            now = round(time.perf_counter() - started, 1)
            f.write(f"{now:7.1f} {line}")
            for key, pattern in MILESTONES.items():
                if key not in out and pattern.search(line):
                    out[key] = now
                    if key == "first_step_s":
                        out["driver_rss_at_first_step_mb"] = round(memory.read()[1] / 1024)
            found = INDEX_LINE.search(line)
            if found:
                out["reused"], out["probed"] = int(found.group(1)), int(found.group(2))
    out["rc"] = proc.wait()
    killer.cancel()
    memory.stop()
    out["total_s"] = round(time.perf_counter() - started, 1)
    out["driver_peak_rss_mb"] = round(memory.peak_kb / 1024)
    if out["rc"] != 0 or "first_step_s" not in out:
        out["tail"] = log.read_text(errors="replace")[-3000:]
    return out


def child_env(code: Path, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(code), "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0",
                # a Ray of its own: plain ray.init() would join whatever local cluster started last here
                "RAY_ADDRESS": "local"})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def table(rows: list[dict]) -> str:
    head = (f"{'where':<6} {'videos':>7} {'run':<5} {'to step 1':>10} {'account':>8} {'Ray up':>7} "
            f"{'probed':>7} {'reused':>7} {'driver peak':>12} {'total':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        fmt = lambda k: f"{r[k]:.1f} s" if isinstance(r.get(k), (int, float)) else "-"  # noqa: E731
        lines.append(f"{r['where']:<6} {r['videos']:>7,} {r['run']:<5} {fmt('first_step_s'):>10} "
                     f"{fmt('account_s'):>8} {fmt('ray_up_s'):>7} {r.get('probed', '-'):>7} "
                     f"{r.get('reused', '-'):>7} {str(r['driver_peak_rss_mb']) + ' MB':>12} {fmt('total_s'):>7}"
                     + ("" if r["rc"] == 0 else f"  rc {r['rc']}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="videos per dataset, comma-separated")
    p.add_argument("--where", default="local,s3", help="local, s3 or both")
    p.add_argument("--runs", default="cold,warm", help="cold (empty cache dir), warm (the cold run's cache again)")
    p.add_argument("--sources", type=int, default=8, help="distinct source videos")
    p.add_argument("--video-size", default="160x96", help="WIDTHxHEIGHT of the source videos")
    p.add_argument("--work", type=Path, default=Path("/tmp/vidpred-startup-bench"),
                   help="trees, S3 server data, caches, logs (kept between runs of the bench)")
    p.add_argument("--code", type=Path, default=REPO, help="the vidpred checkout the runs use (PYTHONPATH)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one run may take")
    p.add_argument("--tag", default="", help="a label stored with the runs (e.g. main, this branch)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "startup_bench.json")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    where = args.where.split(",")
    from vidpred.data.synth import parse_size

    args.work.mkdir(parents=True, exist_ok=True)
    sources = make_sources(args.work, args.sources, parse_size(args.video_size))
    server = None
    rows: list[dict] = []
    try:
        for place in where:
            extra: dict = {}
            if place == "s3":
                from s3server import SeaweedFS

                (args.work / "seaweedfs").mkdir(exist_ok=True)
                server = SeaweedFS(args.work / "seaweedfs")
                server.start()
                extra = server.env()
            for n in sizes:
                setup: dict = {}
                if place == "s3":
                    root, setup = s3_tree(server, n, sources)
                else:
                    started = time.perf_counter()
                    root = local_tree(args.work, n, sources)
                    setup = {"link_s": round(time.perf_counter() - started, 1)}
                print(f"[bench] {place} tree of {n:,} videos: {setup}", flush=True)
                cache = args.work / f"cache-{place}-{n}{'-' + args.tag if args.tag else ''}"
                for run in args.runs.split(","):
                    if run == "cold":
                        shutil.rmtree(cache, ignore_errors=True)
                    name = f"bench-{place}-{n}-{run}-{int(time.time())}"
                    log = args.work / f"{name}.log"
                    print(f"[bench] {place} {n:,} videos, {run} run → {log}", flush=True)
                    load = os.getloadavg()[0]
                    result = run_train(root, cache, name, child_env(args.code, extra), args.timeout, log, args.code)
                    rows.append({"where": place, "videos": n, "run": run, "root": root, "tag": args.tag,
                                 "code": str(args.code),
                                 "load_before": round(load, 2), **setup, **result})
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
            if server is not None:
                server.stop()
                server = None
    finally:
        if server is not None:
            server.stop()
    print(table(rows))
    warm = [r for r in rows if r["run"] == "warm" and r["videos"] >= 100_000 and "first_step_s" in r]
    for r in warm:
        print(f"goal: {r['where']} 100K warm to step 1 in {r['first_step_s']:.1f} s "
              f"({'met' if r['first_step_s'] < GOAL_S else 'missed'}: under {GOAL_S:.0f} s)")
    result = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "video_size": args.video_size,
              "sources": args.sources, "goal_s": GOAL_S, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists():  # runs of other sizes/places measured earlier stay, the ones measured now replace them
        old = json.loads(args.out.read_text()).get("runs", [])
        now = {(r["where"], r["videos"], r["run"], r["tag"]) for r in rows}
        result["runs"] = [r for r in old if (r["where"], r["videos"], r["run"], r.get("tag", "")) not in now] + rows
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0 if all(r["rc"] == 0 and "first_step_s" in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
