"""A new user's mistakes, across every subcommand: each probe must end as one ``vidpred: error:`` line naming
the culprit, exit status 2 (argparse's own usage errors: 2 too), no Python traceback, and no existing file
changed. Then: the error boundary itself (--debug, VIDPRED_DEBUG, a bug keeps its traceback, credentials
never shown), the config fixes found by reading the code, and inspect's verdict against decoding for every
damaged file.

In-process (``vidpred.cli.main`` with capsys) wherever possible: 87 probes in ~15 s on 2 busy cores; one slow
test starts Ray for --verbose."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import time
from pathlib import Path

import pytest
import torch

from vidpred import config as config_mod
from vidpred import console
from vidpred.cli import main
from vidpred.config import Config
from vidpred.data.pipeline import ClipsFromVideo
from vidpred.data.probe import Reason, Skip, VideoInfo
from vidpred.data.report import survey
from vidpred.data.synth import render_clip, synth_dataset
from vidpred.model import Generator
from vidpred.net import free_port
from vidpred.train.checkpoint import GENERATOR_FILE, META_FILE, TAG
from vidpred.train.export import export

from videos import cut, encode, make_broken_videos, noisy_frame, seconds

DEAD = f"http://127.0.0.1:{free_port()}"


def make_checkpoint(folder: Path, step: int = 7) -> Path:
    """A ZeRO-0 checkpoint folder as training writes one (meta.json, generator.pt, g/state shards) for an
    untrained tiny model at 32x32."""
    cfg = Config.model_validate({"data": {"height": 32, "width": 32, "context": 2, "future": 2, "stride": 2},
                                 "train": {"zero_stage": 0}})
    (folder / "g" / TAG).mkdir(parents=True)
    (folder / "d").mkdir()
    torch.manual_seed(0)
    state = Generator(cfg.model).state_dict()
    torch.save(state, folder / GENERATOR_FILE)
    torch.save({"module": state}, folder / "g" / TAG / "mp_rank_00_model_states.pt")
    (folder / META_FILE).write_text(json.dumps({"step": step, "config": cfg.model_dump(mode="json")}))
    return folder


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> dict[str, str]:
    """Every path a probe points at, under one root whose files no probe may change."""
    root = tmp_path_factory.mktemp("world")
    p = {"root": str(root)}
    synth_dataset(root / "data", clips=1, seconds=1.0, fps=30, size=(64, 48), seed=3)
    p["data"] = str(root / "data")
    p["ck"] = str(make_checkpoint(root / "run" / "checkpoint_000001"))
    p["run"] = str(root / "run")
    (root / "empty").mkdir()
    p["empty"] = str(root / "empty")
    p["file"] = str(root / "notes.txt")
    Path(p["file"]).write_text("a plain file\n")
    p["missing"] = str(root / "nothing-here")
    bad = make_checkpoint(root / "badmeta")
    (bad / META_FILE).write_text("{not json")
    p["badmeta"] = str(bad)
    nomodel = make_checkpoint(root / "nomodel")
    (nomodel / META_FILE).write_text(json.dumps({"step": 1}))
    p["nomodel"] = str(nomodel)
    other = make_checkpoint(root / "othermodel")
    meta = json.loads((other / META_FILE).read_text())
    meta["config"]["model"]["channels"] = 32  # weights saved for 16 channels
    (other / META_FILE).write_text(json.dumps(meta))
    p["othermodel"] = str(other)
    exported = make_checkpoint(root / "exported_over")
    export(str(exported), root / "gen.pt")
    (exported / GENERATOR_FILE).write_bytes((root / "gen.pt").read_bytes())  # what `export CK CK/generator.pt` did
    p["exported_over"], p["gen"] = str(exported), str(root / "gen.pt")
    prev = root / "prev-eval"
    prev.mkdir()
    (prev / "metrics.json").write_text("{}")
    p["prev_eval"] = str(prev)
    p["latin1"] = str(root / "latin1.yaml")
    Path(p["latin1"]).write_bytes(b"train:\n  name: caf\xe9\n")
    p["badyaml"] = str(root / "bad.yaml")
    Path(p["badyaml"]).write_text("train: [1\n")
    p["listyaml"] = str(root / "list.yaml")
    Path(p["listyaml"]).write_text("- train\n- data\n")
    p["kc_dead"] = str(root / "kubeconfig")
    Path(p["kc_dead"]).write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:%d'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n" % free_port())
    broken = root / "broken"
    make_broken_videos(broken / "videos" / "train")
    make_broken_videos(broken / "videos" / "val")
    p["broken"] = str(broken)
    return p


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDPRED_CACHE", str(tmp_path / "cache"))  # outside the probed world
    monkeypatch.setenv("RAY_ADDRESS", "local")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mistakeskey")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "mistakes-secret-value")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv(console.DEBUG_ENV, raising=False)


def snapshot(root: str) -> dict[str, str]:
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(Path(root).rglob("*"))
            if f.is_file() and not f.is_symlink()}


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


PROBES = [
    # train: config values, --set, --config files, paths
    (["train", "--set", "train.zero_stage=true"], "train.zero_stage"),
    (["train", "--set", "train.steps=abc"], "train.steps"),
    (["train", "--set", "train.steps=-1"], "train.steps"),
    (["train", "--set", "train.stepz=1"], "train.stepz: unknown key"),
    (["train", "--set", "nosection.key=1"], "nosection: unknown key"),
    (["train", "--set", "novalue"], "--set 'novalue'"),
    (["train", "--set", "train.steps=[1"], "train.steps=[1"),
    (["train", "--set", "data.height=60"], "data.height"),
    (["train", "--set", "data.uri=s3://"], "names no bucket"),
    (["train", "--set", "data.uri=gs://bucket/x"], "unsupported scheme"),
    (["train", "--set", "data.uri={file}"], "data.uri"),
    (["train", "--set", "train.storage_path={file}"], "train.storage_path"),
    (["train", "--set", "train.storage_path={file}/runs"], "train.storage_path"),
    (["train", "--set", "data.cache_dir={file}"], "data.cache_dir"),
    (["train", "--config", "{latin1}"], "not UTF-8"),
    (["train", "--config", "{badyaml}"], "not valid YAML"),
    (["train", "--config", "{listyaml}"], "top level must be a mapping"),
    (["train", "--config", "{empty}"], "is a folder"),
    (["train", "--config", "{missing}"], "file does not exist"),
    (["train", "--resume", "no-such-run"], "--resume no-such-run"),
    (["train", "--set", "data.uri={data}", "--set", "train.init_from={empty}"], "train.init_from"),
    (["train", "--set", "data.uri={data}", "--set", "train.init_from={missing}"], "train.init_from"),
    (["train", "--set", "data.uri={data}", "--set", f"train.cpus_per_worker={os.cpu_count()}"],
     "train.cpus_per_worker"),
    (["train", "--set", "data.uri={broken}"], "no usable clip"),
    (["train", "--set", "data.uri=s3://bucket/data", "--set", f"data.s3_endpoint={DEAD}"], "connection refused"),
    # plan
    (["plan", "--workers", "0"], "train.num_workers"),
    (["plan", "--resolution", "0"], "data.height"),
    (["plan", "--gpu-mem", "lots"], "--gpu-mem"),
    (["plan", "--gpu-mem", "0"], "--gpu-mem"),
    (["plan", "--model", "huge"], "model.size"),
    # export: nothing written over, nothing into a checkpoint, every kind of wrong checkpoint path
    (["export", "{ck}", "{ck}/generator.pt", "--force"], "inside the checkpoint"),
    (["export", "{ck}", "{ck}/g/state/mp_rank_00_model_states.pt"], "inside the checkpoint"),
    (["export", "{ck}", "{gen}"], "add --force"),
    (["export", "{ck}", "{empty}"], "is a folder"),
    (["export", "{ck}", "{file}/generator.pt"], "is a file, where a folder is expected"),
    (["export", "{missing}", "{empty}/out.pt"], "does not exist"),
    (["export", "{empty}", "{empty}/out.pt"], "no meta.json"),
    (["export", "{file}", "{empty}/out.pt"], "is a file, not a folder"),
    (["export", "{gen}", "{empty}/out.pt"], "exported generator"),
    (["export", "{badmeta}", "{empty}/out.pt"], "not valid JSON"),
    (["export", "{nomodel}", "{empty}/out.pt"], "not a vidpred checkpoint's meta.json"),
    (["export", "{run}", "{empty}/out.pt"], "its latest checkpoint is"),
    (["export", "s3://bucket/run/ck", "{empty}/out.pt", "--set", f"data.s3_endpoint={DEAD}"], "connection refused"),
    # eval
    (["eval", "--checkpoint", "{empty}", "--data", "{data}"], "no meta.json"),
    (["eval", "--checkpoint", "{exported_over}", "--data", "{data}", "--out", "{empty}/e"], "vidpred export"),
    (["eval", "--checkpoint", "{othermodel}", "--data", "{data}", "--out", "{empty}/e"], "does not fit the model"),
    (["eval", "--checkpoint", "{badmeta}", "--data", "{data}", "--out", "{empty}/e"], "not valid JSON"),
    (["eval", "--checkpoint", "{ck}", "--data", "{data}", "--out", "{file}"], "where a folder is expected"),
    (["eval", "--checkpoint", "{ck}", "--data", "{data}", "--out", "{ck}/eval"], "inside the checkpoint"),
    (["eval", "--checkpoint", "{ck}", "--data", "{data}", "--out", "{prev_eval}"], "--force"),
    (["eval", "--checkpoint", "{ck}", "--data", "{data}", "--clips", "0"], "--clips"),
    (["eval", "--checkpoint", "{ck}", "--data", "{data}", "--batch-size", "0"], "--batch-size"),
    (["eval", "--checkpoint", "{ck}", "--data", "{data}", "--device", "tpu"], "--device 'tpu'"),
    (["eval", "--checkpoint", "{ck}", "--data", "{data}", "--split", "bogus"], "--split"),
    (["eval", "--checkpoint", "{ck}", "--data", "{missing}"], "data.uri"),
    (["eval", "--checkpoint", "{ck}", "--data", "{broken}", "--out", "{empty}/e"], "no usable clip"),
    # data
    (["data", "synth", "{empty}/s", "--clips", "0"], "--clips"),
    (["data", "synth", "{empty}/s", "--size", "97x64"], "--size"),
    (["data", "synth", "{empty}/s", "--size", "big"], "--size"),
    (["data", "synth", "{empty}/s", "--fps", "0"], "--fps"),
    (["data", "synth", "{empty}/s", "--seconds", "-1"], "--seconds"),
    (["data", "synth", "{file}", "--clips", "1"], "where a folder is expected"),
    (["data", "synth", "{empty}/s", "--clips", "two"], "--clips"),
    (["data", "inspect", "s3://"], "names no bucket"),
    (["data", "inspect", "{file}"], "is a file, not a folder"),
    (["data", "inspect", "{missing}"], "does not exist"),
    (["data", "inspect", "{data}", "--json", "{file}"], "add --force"),
    (["data", "inspect", "{data}", "--set", "data.probe=fast"], "data.probe"),
    (["data", "inspect", "s3://bucket/data", "--set", f"data.s3_endpoint={DEAD}"], "connection refused"),
    (["data", "inspect", "s3://bucket/data", "--set", "data.s3_endpoint=http://no-such-host.invalid:8333"],
     "unknown host"),
    (["data", "upload", "{data}", "s3://"], "s3://bucket"),
    (["data", "upload", "{file}", "s3://bucket/x"], "not a directory"),
    (["data", "upload", "{data}", "s3://bucket/x", "--workers", "0"], "--workers"),
    (["data", "upload", "{data}", "s3://bucket/x", "--set", f"data.s3_endpoint={DEAD}"], "connection refused"),
    (["data", "prepare", "{data}", "{file}"], "DST"),
    (["data", "prepare", "{missing}", "{empty}/p"], "does not exist"),
    (["data", "prepare", "{data}", "{data}"], "is SRC itself"),
    (["train", "--resume", "s3://"], "names no bucket"),
    # tune
    (["tune", "{latin1}", "--check"], "not UTF-8"),
    (["tune", "{missing}", "--check"], "file does not exist"),
    (["tune", "{listyaml}", "--check"], "top level must be a mapping"),
    # cluster
    (["cluster", "status", "run1", "--kubeconfig", "{listyaml}"], "not a mapping"),
    (["cluster", "status", "run1", "--kubeconfig", "{latin1}"], "not UTF-8"),
    (["cluster", "status", "run1", "--kubeconfig", "{kc_dead}"], "cannot reach the Kubernetes API server"),
    (["cluster", "logs", "run1", "--kubeconfig", "{kc_dead}"], "cannot reach the Kubernetes API server"),
    (["cluster", "delete", "run1", "--kubeconfig", "{kc_dead}"], "cannot reach the Kubernetes API server"),
]


@pytest.mark.parametrize("argv, culprit", PROBES, ids=[" ".join(a)[:60] for a, _ in PROBES])
def test_a_mistake_is_one_line_naming_the_culprit_and_changes_nothing(w, argv, culprit, capsys):
    argv = [a.format(**w) for a in argv]
    before = snapshot(w["root"])
    started = time.monotonic()
    rc, out, err = run(argv, capsys)
    took = time.monotonic() - started
    assert rc == 2, (rc, out[-2000:], err[-2000:])
    assert "Traceback" not in out + err, err[-3000:]
    assert culprit in err, err
    if "usage:" not in err:  # ours, not argparse's
        assert err.count("vidpred: error:") == 1 and err.lstrip().startswith("vidpred: error:"), err
    assert "mistakes-secret-value" not in out + err
    assert snapshot(w["root"]) == before, "a failed command changed a file"
    if "connection refused" in culprit or "unknown host" in culprit:
        assert took < 10, f"dead storage took {took:.1f} s to be reported"


def test_enough_probes_over_every_subcommand():
    assert len(PROBES) >= 40
    assert {a[0] for a, _ in PROBES} == {"train", "plan", "export", "eval", "data", "tune", "cluster"}


# --------------------------------------------------------------------------------------------- the boundary

def test_debug_shows_the_traceback_too(w, capsys, monkeypatch):
    argv = ["export", w["missing"], f"{w['empty']}/out.pt"]
    rc, _, err = run([*argv, "--debug"], capsys)
    assert rc == 2 and "Traceback" in err and "CheckpointError" in err and err.rstrip().endswith(
        "g/ and d/)") and "vidpred: error:" in err
    monkeypatch.setenv(console.DEBUG_ENV, "1")
    rc, _, err = run(argv, capsys)
    assert rc == 2 and "Traceback" in err


def test_a_bug_keeps_its_traceback_and_an_interrupt_is_one_line(capsys):
    with pytest.raises(ZeroDivisionError):
        console.guarded(lambda: 1 // 0)

    def interrupted():
        raise KeyboardInterrupt

    assert console.guarded(interrupted) == 130
    assert capsys.readouterr().err == "vidpred: interrupted\n"


def test_messages_never_show_credentials(monkeypatch, capsys):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")

    def fails():
        raise config_mod.UserError("s3://AKIA1234:s3cr3t-value@bucket/x: refused; secret s3cr3t-value")

    assert console.guarded(fails) == 2
    err = capsys.readouterr().err
    assert "s3cr3t" not in err and "AKIA1234" not in err and "s3://***@bucket/x" in err


def test_an_environment_refusal_is_a_message_not_a_bug(tmp_path, capsys):
    def full_disk():
        raise OSError(28, "No space left on device", str(tmp_path / "out.pt"))

    assert console.guarded(full_disk) == 2
    assert "out.pt: No space left on device; free some space" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- what works

def test_export_with_a_relative_path_works_and_force_replaces(w, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(Path(w["ck"]).parent)
    out = tmp_path / "g.pt"
    assert main(["export", Path(w["ck"]).name, str(out)]) == 0
    first = out.read_bytes()
    assert main(["export", Path(w["ck"]).name, str(out), "--force"]) == 0
    assert out.read_bytes() != b"" and len(out.read_bytes()) == len(first)
    assert "wrote the fp32 generator" in capsys.readouterr().out


def test_set_reads_a_value_by_the_fields_type(capsys):
    assert config_mod.load(overrides=["train.name=001"]).train.name == "001"
    assert config_mod.load(overrides=["train.zero_stage=auto"]).train.zero_stage == "auto"
    assert config_mod.load(overrides=["train.zero_stage=3"]).train.zero_stage == 3
    assert config_mod.load(overrides=["train.storage_path=null"]).train.storage_path is None
    assert config_mod.load(overrides=["train.use_gpu=true"]).train.use_gpu is True
    assert main(["train", "--set", "train.name=001", "--print-config"]) == 0
    assert "name: '001'" in capsys.readouterr().out


def test_load_leaves_the_callers_base_untouched_so_resume_compares_with_the_checkpoint():
    saved = Config().model_dump(mode="json")
    kept = copy.deepcopy(saved)
    cfg = config_mod.load(overrides=["data.batch_size=8", "train.steps=99"], base=saved)
    assert saved == kept and cfg.data.batch_size == 8
    from vidpred.train.resume import check_compatible

    with pytest.raises(config_mod.ConfigError, match="data.batch_size: saved 4, now 8"):
        check_compatible(saved, cfg, "run1")


def test_a_dumped_config_takes_a_new_model_size_whole(tmp_path):
    dumped = tmp_path / "cfg.yaml"
    dumped.write_text(Config().to_yaml())  # every key written out, tiny's among them
    large = config_mod.load(dumped, ["model.size=large"]).model
    assert (large.channels, large.levels) == (config_mod.MODEL_SIZES["large"]["channels"], 4)
    mixed = config_mod.load(dumped, ["model.size=large", "model.channels=40"]).model
    assert mixed.channels == 40 and mixed.levels == 4


def test_dead_storage_is_named_and_not_retried(capsys):
    from vidpred.storage import StorageError, check_reachable

    check_reachable.cache_clear()
    started = time.monotonic()
    with pytest.raises(StorageError, match="connection refused .*not retried"):
        check_reachable(DEAD, None)
    assert time.monotonic() - started < 1


# --------------------------------------------------------------------------------------------- inspect vs decoding

class Decoded(ClipsFromVideo):
    """The training pipeline's decode step (the Ray Data flat_map function) run on one file, keeping its
    skip reports instead of sending them to the run's SkipLog actor."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.skips: list[Skip] = []

    def report(self, skip: Skip) -> None:
        self.skips.append(skip)


def damaged_tree(root: Path) -> Path:
    """Every kind of broken file, and cuts at many fractions of two layouts (index first, index last)."""
    train = root / "videos" / "train"
    make_broken_videos(train)
    index_first = render_clip(root / "synth.mov", seconds=3, fps=30, size=(96, 64), seed=5)
    index_last = encode(root / "plain.mov", seconds(3), frame=noisy_frame, height=48, width=64)
    for source in (index_first, index_last):
        for percent in (99, 95, 90, 85, 80, 75, 50, 25):
            target = train / f"{source.stem}_cut{percent}.mov"
            target.write_bytes(source.read_bytes())
            cut(target, percent / 100)
        (train / f"{source.stem}_whole.mov").write_bytes(source.read_bytes())
    (train / "folder.mov").mkdir()
    (train / "dangling.mov").symlink_to(root / "gone.mov")
    (train / "loop.mov").symlink_to(train / "loop.mov")
    return root


def test_inspect_agrees_with_decoding_on_every_damaged_file(tmp_path, capsys):
    root = damaged_tree(tmp_path)
    cfg = config_mod.DataConfig(height=32, width=32, context=2, future=2, stride=2)
    summary = survey(cfg, str(root), splits=("train",), expected=("train",))
    verdicts: dict[str, VideoInfo | Skip] = {v.uri: v for v in summary.videos}
    verdicts.update({s.uri: s for s in summary.skipped})
    listed = {str(p) for p in (root / "videos" / "train").iterdir()}
    assert set(verdicts) == listed, "a file of the folder is missing from the account"
    for uri, verdict in sorted(verdicts.items()):
        if isinstance(verdict, Skip) and verdict.reason == Reason.NOT_FILE:
            continue  # nothing to decode: listed with what it is
        decoder = Decoded(cfg)
        clips = list(decoder({"uri": uri}))
        trains_on_it = bool(clips) and not decoder.skips
        assert isinstance(verdict, VideoInfo) == trains_on_it, (uri, verdict, len(clips), decoder.skips)
        if isinstance(verdict, VideoInfo):
            assert verdict.clips == len(clips), (uri, verdict.clips, len(clips))
    reasons = {Path(u).name: str(v.reason) for u, v in verdicts.items() if isinstance(v, Skip)}
    assert reasons["folder.mov"] == reasons["dangling.mov"] == reasons["loop.mov"] == "not a file"
    assert all(reasons[f"synth_cut{p}.mov"] == "truncated" for p in (99, 95, 90, 85, 80, 75, 50, 25))
    half = next(v for u, v in verdicts.items() if u.endswith("synth_cut50.mov"))
    assert "50%" in half.detail and "whole frames up to 1." in half.detail, half.detail  # not "0.00 s"

    rc, out, err = run(["data", "inspect", str(root)], capsys)
    assert rc == 0 and "Traceback" not in out + err
    for name in ("synth_cut95.mov", "plain_cut99.mov", "folder.mov", "dangling.mov", "loop.mov"):
        assert name in out


@pytest.mark.slow
def test_verbose_shows_rays_own_lines_live_and_in_the_log(w, cli_env, tmp_path):
    """data prepare --verbose, the smallest command that starts Ray, through the same RayOutput as train and
    tune (the quickstart test in test_train_e2e.py checks the default: vidpred's lines only, Ray's in the log)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "vidpred", "data", "prepare", w["data"], str(tmp_path / "p"),
                           "--verbose", "--set", "data.height=16", "--set", "data.width=16"],
                          env=cli_env, capture_output=True, text=True, timeout=300)
    shown = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in shown, shown[-3000:]
    ray_line = "Execution plan of Dataset"  # Ray Data's own INFO line on the driver
    log = Path(re.search(r"Ray's own output: (\S+)", shown).group(1))
    assert ray_line in shown and ray_line in log.read_text() and "[vidpred] prepared 2 videos" in shown
