"""Speed of the synthetic dashcam generator on ONE core: render only, and render + encode to .mov.

The goal: at 1280x720 the full path (render, RGB→yuv420p, libx264 with threads=1, mux) runs faster than
real time, i.e. more frames per second than the clip's fps, on a single core. The process pins itself to
one CPU (``--no-pin`` to skip) so nothing can borrow a second core, and reports both wall and CPU time
(CPU time is the fairer figure on a shared machine). Results: a table on stdout and
``benchmarks/results/synth_speed.json``.

    python benchmarks/synth_speed.py --seconds 2 --size 1280x720
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from vidpred.data import synth


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=2.0, help="clip length (default 2)")
    p.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT (default 1280x720)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--seeds", default="0,1,2,3", help="comma-separated clip seeds (scenes differ in cost)")
    p.add_argument("--preset", default=None, help=f"override the libx264 preset (default: {synth.PRESET})")
    p.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "synth_speed.json")
    args = p.parse_args(argv)
    size = synth.parse_size(args.size)
    if args.preset:
        synth.PRESET = args.preset
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]

    pinned = None
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        pinned = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {pinned})

    n = max(1, round(args.seconds * args.fps))
    rows = []
    threads_at_start = max_threads = _threads()     # e.g. an idle OpenBLAS worker from importing numpy
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            scene = synth._Scene(seed, n, args.fps, *size)
            buf = np.empty((size[1], size[0], 3), np.uint8)
            w0, c0 = time.perf_counter(), time.process_time()
            for i in range(n):
                scene.frame(i, buf)
            render_wall, render_cpu = time.perf_counter() - w0, time.process_time() - c0

            path = Path(tmp) / f"{seed}.mov"
            w0, c0 = time.perf_counter(), time.process_time()
            synth.render_clip(path, args.seconds, args.fps, size, seed)
            full_wall, full_cpu = time.perf_counter() - w0, time.process_time() - c0
            max_threads = max(max_threads, _threads())
            with av.open(str(path)) as c:
                frames = c.streams.video[0].frames
            rows.append(dict(seed=seed, kind=str(scene.kind), lanes=scene.L, frames=n,
                             render_fps_wall=n / render_wall, render_fps_cpu=n / render_cpu,
                             full_fps_wall=n / full_wall, full_fps_cpu=n / full_cpu,
                             bytes=path.stat().st_size, decoded_frames=frames))

    def mean(key):
        return float(np.mean([r[key] for r in rows]))

    summary = {k: mean(k) for k in ("render_fps_wall", "render_fps_cpu", "full_fps_wall", "full_fps_cpu")}
    summary["worst_full_fps_wall"] = min(r["full_fps_wall"] for r in rows)
    summary["realtime_factor_wall"] = summary["full_fps_wall"] / args.fps
    summary["faster_than_realtime"] = summary["worst_full_fps_wall"] > args.fps

    print(f"synthetic dashcam, {size[0]}x{size[1]} @ {args.fps} fps, {args.seconds:g} s clips, "
          f"libx264 preset={synth.PRESET} crf={synth.CRF} threads=1, "
          f"{'pinned to CPU ' + str(pinned) if pinned is not None else 'not pinned'}")
    head = (f"{'seed':>4} {'scene':>8} {'lanes':>5} {'render fps':>11} {'(cpu)':>7} "
            f"{'render+encode fps':>18} {'(cpu)':>7} {'KB':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['seed']:>4} {r['kind']:>8} {r['lanes']:>5} {r['render_fps_wall']:>11.1f} {r['render_fps_cpu']:>7.1f} "
              f"{r['full_fps_wall']:>18.1f} {r['full_fps_cpu']:>7.1f} {r['bytes'] / 1024:>6.0f}")
    print("-" * len(head))
    print(f"{'mean':>4} {'':>8} {'':>5} {summary['render_fps_wall']:>11.1f} {summary['render_fps_cpu']:>7.1f} "
          f"{summary['full_fps_wall']:>18.1f} {summary['full_fps_cpu']:>7.1f}")
    print(f"real-time factor {summary['realtime_factor_wall']:.2f}x (worst clip {summary['worst_full_fps_wall']:.1f} fps "
          f"vs {args.fps} needed): {'OK' if summary['faster_than_realtime'] else 'SLOWER THAN REAL TIME'}")

    result = dict(
        benchmark="synth_speed", size=list(size), fps=args.fps, seconds=args.seconds, seeds=seeds,
        encoder=dict(codec="libx264", preset=synth.PRESET, crf=synth.CRF, threads=1, pix_fmt="yuv420p"),
        pinned_cpu=pinned, threads_at_start=threads_at_start, max_threads_seen=max_threads, summary=summary, clips=rows,
        env=dict(cpu=_cpu_model(), cpu_count=os.cpu_count(),
                 loadavg=os.getloadavg() if hasattr(os, "getloadavg") else None,
                 python=sys.version.split()[0], numpy=np.__version__, av=av.__version__,
                 libavcodec=".".join(map(str, av.library_versions["libavcodec"])), host=platform.node()),
        when=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
