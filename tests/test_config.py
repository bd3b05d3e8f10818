"""Config composition, typing and value checks: bad input fails before any run exists."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import ROOT, run_cli
from pipeline.config import ConfigError, register_configs, validate


@pytest.fixture(scope="module")
def make_config():
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        yield lambda *overrides: compose("config", overrides=list(overrides))


def test_defaults_are_the_reference_experiment(make_config):
    cfg = make_config()
    assert OmegaConf.to_container(cfg, enum_to_str=True) == {
        "data": {
            "name": "toy",
            "val_fraction": 0.0,
            "test_fraction": 0.0,
            "split_seed": 0,
            "standardize": False,
        },
        "model": {"name": "softmax", "bias": True},
        "optim": {
            "name": "sgd",
            "lr": 0.1,
            "momentum": 0.0,
            "nesterov": False,
            "weight_decay": 0.0,
        },
        "seed": 1,
        "epochs": 1000,
        "batch_size": None,
        "log_every": 100,
        "device": "auto",
        "threads": 1,
        "tracking": {
            "uri": None,
            "experiment": "softmax-regression",
            "run_name": None,
            "tags": {},
            "flush_every_s": 5.0,
            "best_metric": "objective",
            "best_mode": "min",
        },
    }
    validate(cfg)


def test_adam_group_has_its_own_fields(make_config):
    cfg = make_config("optim=adam", "optim.lr=0.05")
    assert cfg.optim.name == "adam" and cfg.optim.lr == 0.05
    assert list(cfg.optim.betas) == [0.9, 0.999]
    validate(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lr=-0.1"], "optim.lr must be > 0, got -0.1"),
        (["optim.lr=0"], "optim.lr must be > 0, got 0.0"),
        (["epochs=0"], "epochs must be >= 1, got 0"),
        (["log_every=0"], "log_every must be >= 1"),
        (["threads=0"], "threads must be >= 1"),
        (["seed=-3"], "seed must be in [0, 2**32)"),
        (["optim.momentum=-0.5"], "optim.momentum must be >= 0"),
        (["optim.weight_decay=-1"], "optim.weight_decay must be >= 0"),
        (["optim.nesterov=true"], "optim.nesterov=true needs momentum"),
        (["optim=adam", "optim.betas=[0.9]"], "optim.betas must be two values in [0, 1)"),
        (["optim=adam", "optim.eps=0"], "optim.eps must be > 0"),
        (["tracking.flush_every_s=0"], "tracking.flush_every_s must be > 0"),
        (["+extra=1"], "unknown key 'extra'"),
        (["+optim.lrr=0.1"], "unknown key 'optim.lrr'"),
    ],
)
def test_bad_values_are_rejected_with_the_key_and_a_fix(make_config, overrides, message):
    with pytest.raises(ConfigError) as raised:
        validate(make_config(*overrides))
    assert message in str(raised.value)
    assert "Fix:" in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-0.1", "Config error: optim.lr must be > 0, got -0.1. Fix: e.g. optim.lr=0.1"),
        ("optim.lr=abc", "Value 'abc' of type 'str' could not be converted to Float"),
        ("optim=rmsprop", "Could not find 'optim/rmsprop'"),
        ("epochs=0", "Config error: epochs must be >= 1, got 0"),
        ("epoch=10", "Could not override 'epoch'"),
        ("+foo=1", "Config error: unknown key 'foo'"),
    ],
)
def test_cli_errors_exit_nonzero_without_creating_a_run(tmp_path, override, message):
    result = run_cli(override, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "Epoch" not in result.stdout
    assert not (tmp_path / "mlruns").exists()


def test_unknown_optimizer_lists_the_choices(tmp_path):
    result = run_cli("optim=rmsprop", cwd=tmp_path)
    listed = result.stderr.split("Available options in 'optim':")[1].split("Config search")[0]
    assert listed.split() == ["adam", "adamw", "lbfgs", "sgd"]


def test_every_config_group_file_is_valid(make_config):
    for path in sorted((ROOT / "conf").glob("*/*.yaml")):
        group, name = path.parent.name, path.stem
        if group == "hydra":
            continue
        required = ["data.path=any.csv"] if name == "csv" else []
        validate(make_config(f"{group}={name}", *required))
