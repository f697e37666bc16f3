"""Config: every bad value fails at the door with a message naming the field; good YAML round-trips."""

import subprocess
import sys

import pytest
import yaml

from vidpred import config


def error_of(overrides, path=None) -> str:
    with pytest.raises(config.ConfigError) as info:
        config.load(path, overrides)
    return str(info.value)


def test_defaults_are_valid_and_small():
    cfg = config.load()
    assert cfg.train.num_workers == 2 and cfg.train.zero_stage == 2
    assert cfg.train.cpus_per_worker < 1  # whole-CPU workers deadlock Ray Data on 2 cores
    assert cfg.data.uri is None


@pytest.mark.parametrize("override, field, allowed", [
    ("train.num_workers=0", "train.num_workers", "greater than or equal to 1"),
    ("loss.w_kl=-0.5", "loss.w_kl", "greater than or equal to 0"),
    ("loss.w_adv=.nan", "loss.w_adv", "finite"),
    ("train.zero_stage=4", "train.zero_stage", "must be 0, 1, 2, 3 or auto"),
    ("train.precision=fp16", "train.precision", "'fp32' or 'bf16'"),
    ("data.height=60", "data.height", "multiple of 8"),
    ("data.width=100", "data.width", "multiple of 8"),
    ("data.uri=/no/such/dir", "data.uri", "does not exist"),
    ("train.cpus_per_worker=0", "train.cpus_per_worker", "greater than 0"),
    ("model.size=huge", "model.size", "'tiny', 'base' or 'large'"),
    ("model.rnn=rnn", "model.rnn", "'gru' or 'lstm'"),
    ("train.placement_strategy=spread", "train.placement_strategy",
     "'PACK', 'SPREAD', 'STRICT_PACK' or 'STRICT_SPREAD'"),
    ("loss.kl_anneal=linear", "loss.kl_anneal_end", "greater than loss.kl_anneal_start"),
    ("train.val_every=0", "train.val_every", "greater than or equal to 1"),
    ("train.max_failures=-2", "train.max_failures", "greater than or equal to -1"),
    ("train.nonfinite_patience=0", "train.nonfinite_patience", "greater than or equal to 1"),
    ("train.nonfinite_lr_factor=1", "train.nonfinite_lr_factor", "less than 1"),
    ("train.nonfinite_max_restores=-1", "train.nonfinite_max_restores", "greater than or equal to 0"),
    ("train.grad_accum=3", "data.batch_size", "multiple of train.grad_accum = 3"),
    ("train.min_workers=3", "train.min_workers = 3", "at most train.num_workers = 2"),
    ("train.min_workers=0", "train.min_workers", "greater than or equal to 1"),
    ("train.min_workers=1..2", "train.min_workers", "valid integer"),
    ("train.elastic_resize_interval_s=-1", "train.elastic_resize_interval_s", "greater than or equal to 0"),
    ("train.activation_checkpointing=layer", "train.activation_checkpointing", "'off', 'step' or 'block'"),
    ("data.probe_index=sometimes", "data.probe_index", "'use', 'refresh' or 'off'"),
    ("train.checkpoint_upload=later", "train.checkpoint_upload", "'async' or 'sync'"),
    ("data.probe_index_dir=gs://bucket/indexes", "data.probe_index_dir", "allowed: a local path"),
    ("data.probe_index_dir=s3://", "data.probe_index_dir", "names no bucket"),
    ("data.probe_index_dir=/dev/null", "data.probe_index_dir", "where a folder is expected"),
])
def test_bad_value_names_field_and_allowed(override, field, allowed):
    msg = error_of([override])
    assert field in msg and allowed in msg


def test_elastic_range_and_the_batch_at_each_size():
    fixed = config.load(overrides=["train.num_workers=2", "train.min_workers=2"]).train
    assert not fixed.elastic and not config.load().train.elastic
    cfg = config.load(overrides=["train.num_workers=4", "train.min_workers=1", "data.batch_size=4",
                                 "train.grad_accum=2"])
    assert cfg.train.elastic and cfg.at_world(4) is cfg
    for world, accum in ((2, 4), (1, 8)):  # global batch 4 × 4 = 16 clips in micro-batches of 2
        at = cfg.at_world(world)
        assert (at.train.grad_accum, at.micro_batch, world * at.data.batch_size) == (accum, 2, 16)
    assert cfg.at_world(3) is cfg  # 3 does not divide 4 × 2: each worker keeps data.batch_size
    assert cfg.train.grad_accum == 2 and cfg.data.batch_size == 4  # the run's own config is left as it was


def test_model_size_preset_fills_what_is_not_given():
    large = config.load(overrides=["model.size=large"]).model
    assert large.channels == config.MODEL_SIZES["large"]["channels"] and large.rnn == "lstm"
    mixed = config.load(overrides=["model.size=base", "model.channels=32"]).model
    assert mixed.channels == 32 and mixed.blocks == config.MODEL_SIZES["base"]["blocks"]
    assert config.load().model.size == "tiny"


def test_unknown_key_lists_allowed_keys():
    msg = error_of(["train.stepz=3"])
    assert "train.stepz: unknown key" in msg and "steps" in msg
    assert "unknown key" in error_of(["nosuch.x=1"])


def test_bad_override_syntax():
    assert "section.key=value" in error_of(["train.steps"])


def test_missing_and_malformed_files(tmp_path):
    assert "does not exist" in error_of([], tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    assert "mapping" in error_of([], bad)


def test_yaml_round_trip_and_override_order(tmp_path):
    cfg = config.load(overrides=["train.steps=7", "loss.w_adv=0.5", f"data.uri={tmp_path}"])
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    again = config.load(path)
    assert again == cfg
    assert config.load(path, ["train.steps=9"]).train.steps == 9
    assert yaml.safe_load(cfg.to_yaml())["loss"]["w_adv"] == 0.5


def test_cli_rejects_before_ray_starts(tmp_path):
    """A bad value exits 2 with the field named, fast, and without importing Ray."""
    code = ("import sys; from vidpred.cli import main; rc = main(['train', '--set', 'train.num_workers=0']);"
            "print('RAY_IMPORTED' if 'ray' in sys.modules else 'NO_RAY'); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "train.num_workers" in proc.stderr
    assert "NO_RAY" in proc.stdout


def test_print_config(capsys):
    from vidpred.cli import main

    assert main(["train", "--print-config", "--set", "train.steps=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["steps"] == 3 and set(printed) == {"data", "model", "loss", "train"}
