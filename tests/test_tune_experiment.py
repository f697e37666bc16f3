"""vidpred tune without Ray runs: the experiment schema and its messages, the objective, weight schedules,
the report files and the chart's tune mode. The runs themselves are in test_tune_run.py."""

from __future__ import annotations

import importlib.util
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO
from vidpred import cli
from vidpred import config as config_mod
from vidpred.eval.plot import DPI, PANEL_INCHES
from vidpred.config import ConfigError
from vidpred.model.losses import generator_loss
from vidpred.model.metrics import sharpness_ratio
from vidpred.tune import experiment, report
from vidpred.tune.objective import derived
from vidpred.tune.trial import extend

TUNE_DIR = REPO / "tune"
SMOKE = TUNE_DIR / "smoke.yaml"


def write(tmp_path: Path, data: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def smoke_with(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(SMOKE.read_text())
    raw.update(changes)
    return write(tmp_path, raw)


def error_of(path: Path, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        experiment.load(path, overrides)
    return str(info.value)


# --------------------------------------------------------------------------------------------- schema

@pytest.mark.parametrize("path", sorted(TUNE_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_experiment_is_valid(path):
    exp = experiment.load(path)
    cfg = exp.base_training()
    assert exp.space and cfg.train.steps >= 1
    assert cli.main(["tune", str(path), "--check"]) == 0


def test_defaults_search_three_weights_against_w_rec(tmp_path):
    exp = experiment.load(write(tmp_path, {"name": "d"}))
    assert exp.scheduler.kind == "asha" and exp.searcher.kind == "random"
    assert exp.objective.metric == "val_score" and exp.objective.mode == "max"
    assert exp.space["w_rec"].dist == "fixed" and exp.space["w_rec"].value == 1.0
    assert {k for k, d in exp.space.items() if d.dist == "loguniform"} == {"w_kl", "w_adv", "w_feat"}


@pytest.mark.parametrize("change,expected", [
    ({"space": {"w_adv": {"dist": "loguniform", "low": 0, "high": 0.1}}}, "space.w_adv: loguniform needs low > 0"),
    ({"space": {"w_adv": {"dist": "uniform", "low": 0.2, "high": 0.1}}}, "space.w_adv: low = 0.2 must be below high"),
    ({"space": {"w_adv": {"dist": "choice"}}}, "space.w_adv: dist choice needs values; missing values"),
    ({"space": {"w_gan": 0.1}}, "w_gan: not a tunable weight; allowed: w_rec, w_kl, w_adv, w_feat"),
    ({"space": {"w_adv": 0.1}}, "nothing to search"),
    ({"scheduler": {"kind": "asha", "perturbation_interval": 5}}, "perturbation_interval: not used by scheduler kind asha"),
    ({"scheduler": {"kind": "hyperband"}}, "scheduler.kind = 'hyperband'"),
    ({"scheduler": "pbt", "searcher": "optuna"}, "searcher optuna with scheduler pbt"),
    ({"objective": {"metric": "val_lpips"}}, "objective.metric = 'val_lpips': unknown metric; allowed: val_psnr_gain"),
    ({"resources": {"cpus_per_worker": 0}}, "resources.cpus_per_worker = 0"),
    ({"base": {"train": {"min_workers": 1}}, "resources": {"num_workers": 2}}, "train.min_workers = 1: a trial runs on a fixed"),
    ({"resource": {}}, "resource: unknown key; allowed: name, description, num_samples"),
    ({"base": {"train": {"steps": 0}}}, "base: invalid config:\n  train.steps = 0"),
    ({"base_config": "missing.yaml"}, "base_config"),
    ({"name": "has space"}, "name = 'has space'"),
])
def test_mistakes_name_the_field(tmp_path, change, expected):
    assert expected in error_of(smoke_with(tmp_path, **change))


def test_set_overrides_the_base_and_is_validated(tmp_path):
    exp = experiment.load(SMOKE, ["train.steps=5"])
    assert exp.base_training().train.steps == 5
    assert "train.steps = -1" in error_of(SMOKE, ["train.steps=-1"])


def test_base_config_file_resolves_beside_the_experiment(tmp_path):
    (tmp_path / "train.yaml").write_text(yaml.safe_dump({"train": {"steps": 7, "lr_g": 1e-3}}))
    exp = experiment.load(smoke_with(tmp_path, base_config="train.yaml", base={"train": {"steps": 9}}))
    cfg = exp.base_training()
    assert (cfg.train.steps, cfg.train.lr_g) == (9, 1e-3)  # base wins over base_config
    assert (cfg.train.num_workers, cfg.train.cpus_per_worker) == (1, 0.49)  # resources on top


def test_optuna_missing_is_a_clear_message(tmp_path, monkeypatch):
    exp = experiment.load(smoke_with(tmp_path, searcher={"kind": "optuna"}))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(ConfigError, match=r"searcher.kind = 'optuna': Optuna is not installed.*pip install optuna"):
        exp.check_searcher_installed()


def test_cli_reports_a_bad_experiment_with_exit_2(tmp_path, capsys):
    path = smoke_with(tmp_path, num_samples=0)
    assert cli.main(["tune", str(path), "--check"]) == 2
    assert "num_samples = 0" in capsys.readouterr().err


def test_one_cpu_node_refuses_a_layout_that_starves_ray_data(tmp_path, monkeypatch):
    import ray

    from vidpred.tune.run import concurrency

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}])
    exp = experiment.load(smoke_with(tmp_path, max_concurrent_trials=None))
    assert concurrency(exp, exp.base_training()) == 2  # 2 x 0.49 CPU, 1.02 left for decoding
    exp = experiment.load(smoke_with(tmp_path, max_concurrent_trials=3))
    with pytest.raises(ConfigError, match=r"max_concurrent_trials = 3 trials .* use max_concurrent_trials: 2"):
        concurrency(exp, exp.base_training())


# --------------------------------------------------------------------------------------------- objective

def test_score_is_ssim_gain_minus_the_sharpness_penalty():
    m = {"val_psnr": 26.0, "val_copy_last_psnr": 25.0, "val_ssim": 0.86, "val_copy_last_ssim": 0.85,
         "val_sharpness": 0.5}
    d = derived(m, sharpness_weight=0.02)
    assert d["val_psnr_gain"] == pytest.approx(1.0) and d["val_ssim_gain"] == pytest.approx(0.01)
    assert d["val_sharpness_error"] == pytest.approx(math.log(2))
    assert d["val_score"] == pytest.approx(0.01 - 0.02 * math.log(2))
    # as sharp as the truth: no penalty; twice as much edge energy (noise) costs what half (blur) does
    assert derived({**m, "val_sharpness": 1.0}, 0.02)["val_score"] == pytest.approx(0.01)
    assert derived({**m, "val_sharpness": 2.0}, 0.02)["val_score"] == pytest.approx(d["val_score"])
    assert derived({"rec": 0.1}, 0.02) == {}


def test_sharpness_ratio_sees_blur_and_noise():
    torch.manual_seed(0)
    truth = torch.full((2, 3, 32, 32), 0.5)
    truth[..., 8:24, 8:24] = 0.8  # a brighter square: edges only at its border
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(truth, (2, 2, 2, 2), mode="replicate"), 5, 1)
    noisy = (truth + 0.1 * torch.randn_like(truth)).clamp(0, 1)
    assert sharpness_ratio(truth, truth) == pytest.approx(1.0)
    assert sharpness_ratio(blurred, truth) < 0.5 and sharpness_ratio(noisy, truth) > 2


# --------------------------------------------------------------------------------------------- schedules

def test_schedule_extends_inherits_and_does_not_repeat():
    w1, w2 = {"w_adv": 0.01}, {"w_adv": 0.02}
    s = extend([], 0, w1)
    assert s == [{"step": 0, "w_adv": 0.01}]
    assert extend(s, 4, w1) == s  # same weights: no new phase
    s2 = extend(s, 4, w2)
    assert s2 == [{"step": 0, "w_adv": 0.01}, {"step": 4, "w_adv": 0.02}]
    assert extend(s2, 4, {"w_adv": 0.03})[-1] == {"step": 4, "w_adv": 0.03}  # a restart at 4 replaces it


def test_loss_schedule_is_validated_and_applied():
    with pytest.raises(ConfigError, match=r"loss.schedule steps \[4, 2\]: must be strictly increasing"):
        config_mod.validate({"loss": {"schedule": [{"step": 4}, {"step": 2}]}})
    with pytest.raises(ConfigError, match=r"loss.schedule.0.w_adv = -1"):
        config_mod.validate({"loss": {"schedule": [{"step": 0, "w_adv": -1}]}})
    w = config_mod.validate({"loss": {"w_adv": 0.0, "schedule": [{"step": 3, "w_adv": 1.0}]}}).loss
    pred, target = torch.zeros(1, 2, 3, 8, 8), torch.ones(1, 2, 3, 8, 8)
    logits = [torch.zeros(1, 1)]
    feats = [[torch.zeros(1, 2)]]

    def total(step):
        return generator_loss(pred, target, torch.tensor(0.0), logits, feats, feats, w, "lsgan", step=step)[1]["g_total"].item()

    assert total(2) == pytest.approx(1.0)  # L1 only: w_adv 0 before step 3
    assert total(3) == pytest.approx(2.0)  # + 1.0 x lsgan (0 - 1)^2


# --------------------------------------------------------------------------------------------- report

def fake_grid(exp_path: Path):
    def result(i, score, step, schedule=None):
        weights = {"w_rec": 1.0, "w_kl": 10 ** -(i + 2), "w_adv": 0.01 * (i + 1), "w_feat": 0.1}
        metrics = {"trial_id": f"t{i}", "step": step, "val_score": score, "val_psnr": 25.0 + i, "val_ssim": 0.8,
                   "val_psnr_gain": 0.1 * i, "val_ssim_gain": score, "val_sharpness": 0.9, "rec": 0.05,
                   "g_total": 0.1, "checkpoint_path": f"/ckpt/t{i}", **weights}
        if schedule:
            metrics["schedule"] = json.dumps(schedule)
        return SimpleNamespace(metrics=metrics, config=weights, path=f"/exp/run_trial_t{i}", error=None)

    pbt = [{"step": 0, "w_rec": 1.0, "w_kl": 1e-3, "w_adv": 0.01, "w_feat": 0.1},
           {"step": 6, "w_rec": 1.0, "w_kl": 1e-3, "w_adv": 0.02, "w_feat": 0.1}]
    return [result(0, 0.001, 12), result(1, 0.004, 12, pbt), result(2, -0.002, 6),
            SimpleNamespace(metrics={}, config={"w_adv": 0.5}, path="/exp/run_trial_t3", error=RuntimeError("x")),
            # created but not started when the driver was stopped (Ctrl-C): Tune gives it no config
            SimpleNamespace(metrics=None, config=None, path="/exp/run_trial_t4", error=None)]


def test_report_sorts_writes_and_exports_a_trainable_best_config(tmp_path):
    exp = experiment.load(SMOKE)
    cfg = exp.base_training()
    run = SimpleNamespace(exp=exp, cfg=cfg, grid=fake_grid(SMOKE), path=str(tmp_path / "exp"))
    out = report.write_report(run, str(tmp_path / "report"))
    assert [Path(p).name for p in out.files.values()] == [
        "results.csv", "results.md", "schedules.json", "best.yaml", "summary.json", "objective.png"]
    rows = (tmp_path / "report" / "results.csv").read_text().splitlines()
    # by val_score; a trial without a result last, named by its folder
    assert [r.split(",")[1] for r in rows[1:]] == ["t1", "t0", "t2", "run_trial_t3", "run_trial_t4"]
    md = (tmp_path / "report" / "results.md").read_text()
    assert "| 1 | t1 | 0.004 | done | 12 |" in md and "| 3 | t2 | -0.002 | stopped | 6 |" in md
    assert "| 4 | run_trial_t3 |  | error |" in md and "| 5 | run_trial_t4 |  | stopped | 0 |" in md
    best = config_mod.load(tmp_path / "report" / "best.yaml")  # exactly what vidpred train --config does
    assert [p.step for p in best.loss.schedule] == [0, 6] and best.loss.at(7).w_adv == 0.02
    assert (best.train.num_workers, best.train.steps, best.train.name) == (1, 12, None)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["trial_id"] == "t1" and summary["checkpoint_path"] == "/ckpt/t1"
    with Image.open(io.BytesIO((tmp_path / "report" / "objective.png").read_bytes())) as png:
        assert png.format == "PNG" and png.size == (2 * PANEL_INCHES[0] * DPI, 2 * PANEL_INCHES[1] * DPI)
        assert len(set(png.getdata())) > 3
    assert out.describe().startswith("best trial t1: val_score=0.0040 at step 12")


# --------------------------------------------------------------------------------------------- chart

def test_the_charts_tune_mode_writes_a_valid_experiment(tmp_path):
    import k8s_tools as kt

    _, objects = kt.render_mode(tmp_path, "tune")
    data = next(o for o in objects if o["kind"] == "ConfigMap" and "experiment.yaml" in o.get("data", {}))["data"]
    (tmp_path / "config.yaml").write_text(data["config.yaml"])
    (tmp_path / "experiment.yaml").write_text(data["experiment.yaml"])
    exp = experiment.load(tmp_path / "experiment.yaml")
    cfg = exp.base_training()
    assert exp.base_config == "config.yaml" and cfg.data.uri.startswith("s3://")
    assert cfg.train.use_gpu and cfg.train.num_workers == 2 and exp.max_concurrent_trials == 4
