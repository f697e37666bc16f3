"""The quickstart job end to end at tiny size: synthetic clips → Ray Data → 2 Ray Train workers with
DeepSpeed ZeRO-2 → checkpoints → the prediction PNG."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import TINY_RUN

pytestmark = pytest.mark.slow


def run_vidpred(args, env, timeout=1200):
    try:
        proc = subprocess.run([sys.executable, "-m", "vidpred", *args], env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as hung:
        report = hung_report(hung)  # failed outside the handler: no chained TimeoutExpired traceback
    else:
        assert proc.returncode == 0, f"exit {proc.returncode}\nSTDOUT\n{proc.stdout[-6000:]}\nSTDERR\n{proc.stderr[-6000:]}"
        return proc.stdout + proc.stderr
    pytest.fail(f"no exit after {timeout} s\n{report}", pytrace=False)


def hung_report(hung: subprocess.TimeoutExpired) -> str:
    """What a run that did not end had printed, and the end of Ray's log file it names: the console alone
    rarely says which worker waited on what."""
    out = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x or "" for x in (hung.stdout, hung.stderr))
    report = f"CONSOLE\n{out[-4000:]}"
    found = re.search(r"own output: (\S+)", out)
    if found and Path(found.group(1)).exists():
        report += f"\nRAY LOG {found.group(1)}\n{Path(found.group(1)).read_text(errors='replace')[-8000:]}"
    return report


CONSOLE_LINES = 40  # the quickstart's console fits on one screen (26 lines measured for TINY_RUN)


def test_quickstart_job_trains_checkpoints_and_draws(cli_env, tmp_path):
    out = run_vidpred(["train", *TINY_RUN], cli_env)

    # a console for people: vidpred's lines only, no traceback; Ray's own output is in the run's log file
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) <= CONSOLE_LINES and "Traceback" not in out, out[-6000:]
    assert all(line.startswith("[vidpred]") for line in lines), [x for x in lines if not x.startswith("[vidpred]")]
    ray_log = Path(re.search(r"Ray's own output: (\S+)", out).group(1))
    assert "pid=" in ray_log.read_text()  # the workers' and Ray Data's lines went there

    losses = [float(v) for v in re.findall(r"g_total=(\S+)", out)]
    assert len(losses) >= 6 and all(v == v and abs(v) < 1e6 for v in losses), out[-3000:]
    assert "ZeRO-2" in out and "2 workers" in out

    checkpoint = Path(re.search(r"checkpoint: (\S+)", out).group(1))
    assert (checkpoint / "generator.pt").is_file()
    meta = json.loads((checkpoint / "meta.json").read_text())
    assert meta["step"] == 6
    shards = sorted(p.name for p in (checkpoint / "g" / "state").iterdir())
    assert any("zero_pp_rank_0" in s for s in shards) and any("zero_pp_rank_1" in s for s in shards), shards

    # validation against copy-last ran at the last step, and rank 0 wrote TensorBoard events under the run dir
    assert re.search(r"step 6/6 .*\| val psnr [\d.]+ dB \(copy-last [\d.]+\) ssim [\d.]+ \([\d.]+\)", out), out[-3000:]
    assert re.search(r"validation: PSNR [\d.]+ dB \(copy-last [\d.]+\)", out), out[-3000:]
    events = list((checkpoint.parent / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000, events

    png = Path(re.search(r"prediction: (\S+)", out).group(1))
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        # two rows (truth, predicted) of 64x64 frames drawn at 2x: 4 context + 4 future columns of
        # 128 + 4 px gap, a 72 px label column and a 12 px context|future divider; rows 128 + 4, border 4
        assert image.size == (72 + 8 * 132 + 12, 2 * 132 + 4)
        assert len(set(image.getdata())) > 100  # a picture, not a blank canvas
