"""Config composition, typing and value checks: bad input fails before any run exists."""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import ROOT, compose_job, run_cli, runs_of, sqlite_uri, train_into
from pipeline.config import CONF_DIR, compose_config, register_configs, validate
from pipeline.config.copies import copy_of, deep_copy, keep
from pipeline.config.params import flatten_dict
from pipeline.errors import ConfigError


def test_defaults_are_the_reference_experiment():
    cfg = compose_config()
    assert OmegaConf.to_container(cfg, enum_to_str=True) == {
        "data": {
            "_target_": "pipeline.core.data.toy",
            "val_fraction": 0.0,
            "test_fraction": 0.0,
            "split_seed": 0,
            "standardize": False,
        },
        "model": {"_target_": "torch.nn.Linear", "bias": True},
        "optim": {
            "_target_": "torch.optim.SGD",
            "lr": 0.1,
            "momentum": 0.0,
            "nesterov": False,
            "weight_decay": 0.0,
        },
        "scheduler": {"_target_": None},  # a constant learning rate
        "seed": 1,
        "epochs": 1000,
        "batch_size": None,
        "log_every": 100,
        "device": "auto",
        "threads": 1,
        "early_stopping": {  # off
            "patience": None,
            "monitor": "val_cost",
            "mode": "min",
            "min_delta": 0.0,
            "restore_best": True,
        },
        "loss": {"class_weights": None, "label_smoothing": 0.0},
        "tracking": {
            "uri": None,
            "experiment": "softmax-regression",
            "run_name": None,
            "tags": {},
            "flush_every_s": 5.0,
            "resume": None,
            "system_metrics": False,
            "system_metrics_every_s": 10.0,
        },
        "sweep": {"metric": "objective", "direction": "minimize", "resume": True},
        "checkpoint": {"every_s": 60.0, "keep": False},
        "cv": {"folds": None, "stratified": True},
    }
    validate(cfg)


def test_the_choices_are_recorded_by_hydra_not_in_the_config():
    cfg, job = compose_job("optim=adam", "data=iris")
    assert job.choices == {"data": "iris", "model": "softmax", "optim": "adam", "scheduler": "none"}
    assert "name" not in cfg.optim
    assert "name" not in cfg.data


def test_adam_group_has_its_own_fields():
    cfg = compose_config(["optim=adam", "optim.lr=0.05"])
    assert cfg.optim._target_ == "torch.optim.Adam"
    assert cfg.optim.lr == 0.05
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
        (["optim.momentum=-0.5"], "optim.momentum must be in [0, 1), got -0.5"),
        (["optim.momentum=2"], "optim.momentum must be in [0, 1), got 2.0. Fix: e.g. optim.m"),
        (["optim.momentum=1"], "optim.momentum must be in [0, 1), got 1.0"),
        (["optim=adam", "optim.betas=[0.9,1.0]"], "optim.betas must be two values in [0, 1)"),
        (["optim=adamw", "optim.betas=[-0.1,0.999]"], "must be two values in [0, 1), got [-0.1"),
        (["optim.weight_decay=-1"], "optim.weight_decay must be >= 0"),
        (["optim.nesterov=true"], "optim.nesterov=true needs momentum"),
        (["optim=adam", "optim.betas=[0.9]"], "optim.betas must be two values in [0, 1)"),
        (["optim=adam", "optim.eps=0"], "optim.eps must be > 0"),
        (["tracking.flush_every_s=0"], "tracking.flush_every_s must be > 0"),
        (["+extra=1"], "unknown key 'extra'"),
        (["+optim.lrr=0.1"], "unknown key 'optim.lrr'"),
        (["sweep.metric=test_cost"], "sweep.metric=test_cost needs a test split"),
        (["data=iris", "data.val_fraction=0.5", "data.test_fraction=0.45"], "leave >= 10%"),
        (["optim=lbfgs", "batch_size=32"], "optim=lbfgs needs full-batch training"),
        (["data=csv"], "data.path is required. Fix: pass data.path=<value>"),
    ],
)
def test_bad_values_are_rejected_with_the_key_and_a_fix(overrides, message):
    with pytest.raises(ConfigError) as raised:
        validate(compose_config(overrides))
    assert message in str(raised.value)
    assert "Fix:" in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-0.1", "Config error: optim.lr must be > 0, got -0.1. Fix: e.g. optim.lr=0.1"),
        ("optim.lr=abc", "Value 'abc' of type 'str' could not be converted to Float"),
        ("optim=rmsprop", "Could not find 'optim/rmsprop'"),
        ("model.activation=relu", "Could not override 'model.activation'"),
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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=mlp", "model.activation=sigmoid"], "expected one of [relu, tanh, gelu]"),
        (["sweep.direction=best"], "expected one of [minimize, maximize]"),
        (["data=iris", "data.dataset=mnist"], "expected one of [iris, wine, digits]"),
    ],
)
def test_enum_fields_are_checked_while_composing(overrides, message):
    with pytest.raises(Exception, match="Error merging override") as raised:
        compose_config(overrides)
    assert message in str(raised.value.__cause__)


def test_unknown_optimizer_lists_the_choices(tmp_path):
    result = run_cli("optim=rmsprop", cwd=tmp_path)
    listed = result.stderr.split("Available options in 'optim':")[1].split("Config search")[0]
    assert listed.split() == ["adam", "adamw", "lbfgs", "sgd"]


@pytest.mark.slow  # seconds: in CI, not the inner loop
def test_every_config_group_file_composes_and_validates():
    files = sorted(path for path in (ROOT / "conf").glob("*/*.yaml") if path.parent.name != "hydra")
    groups = {path.parent.name for path in files}
    assert groups == {"data", "model", "optim", "scheduler", "experiment", "debug"}
    for path in files:
        group, name = path.parent.name, path.stem
        required = [f"data.path=any.{name}"] if name in ("csv", "parquet") else []
        required += ["data=iris"] if name == "plateau" else []  # it watches the validation cost
        validate(compose_config([f"{group}={name}", *required]))


def test_experiments_set_what_the_readme_says():
    reference = compose_config(["experiment=reference"])
    assert reference == compose_config()
    iris = compose_config(["experiment=iris_mlp"])
    assert iris.data.dataset.value == "iris"
    assert iris.model._target_.endswith(".mlp")
    assert iris.optim._target_ == "torch.optim.Adam"
    assert iris.batch_size == 16
    assert list(iris.model.hidden) == [16]
    assert (iris.epochs, iris.optim.lr) == (300, 0.01)
    fast = compose_config(["debug=fast"])
    assert (fast.epochs, fast.log_every) == (20, 10)
    assert fast.tracking.flush_every_s == 0.5


# What Hydra records about the overrides themselves, which differ with any override.
HYDRA_BOOKKEEPING = ("hydra.overrides.", "hydra.job.override_dirname", "hydra.runtime.choices.")

PRESET_GROUPS = ("experiment", "debug")  # a preset: a file of one of these groups

# Every value each preset sets: the group files it picks, then its own values (flat keys).
PRESETS = {
    "experiment/iris_mlp": (
        {"data": "iris", "model": "mlp", "optim": "adam"},
        {"epochs": 300, "batch_size": 16, "model.hidden": [16], "optim.lr": 0.01},
    ),
    "experiment/lr_seed_sweep": (
        {},
        {"hydra.sweeper.params.optim.lr": "0.01,0.1", "hydra.sweeper.params.seed": "1,2,3"},
    ),
    "experiment/reference": (
        {"data": "toy", "model": "softmax", "optim": "sgd"},
        {"seed": 1, "epochs": 1000, "batch_size": None, "optim.lr": 0.1},
    ),
    "debug/fast": ({}, {"epochs": 20, "log_every": 10, "tracking.flush_every_s": 0.5}),
}


def composed(*overrides: str) -> tuple[dict, dict]:
    """(the config with Hydra's node, as flat keys; Hydra's group choices)."""
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    values = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    return flatten_dict(values), dict(cfg.hydra.runtime.choices)


def test_every_value_a_preset_sets_is_composed_and_nothing_else_changes():
    files = sorted((ROOT / "conf").glob("*/*.yaml"))
    presets = {f"{p.parent.name}/{p.stem}" for p in files if p.parent.name in PRESET_GROUPS}
    assert presets == set(PRESETS)  # a new preset gets its values written down here
    for preset, (choices, values) in PRESETS.items():
        raw = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / f"{preset}.yaml"))
        picked = {key.split("/")[-1]: value for entry in raw.pop("defaults", []) for key, value in
                  entry.items()}  # fmt: skip
        assert picked == choices, preset
        assert set(flatten_dict(raw)) == set(values), preset  # the table holds every value
        group, name = preset.split("/")
        flat, chosen = composed(f"{group}={name}")
        assert {g: chosen[g] for g in choices} == choices, preset
        for key, value in values.items():
            assert flat[key] == value, (preset, key)
        base, _ = composed(*(f"{g}={c}" for g, c in choices.items()))
        changed = {k for k in flat.keys() | base.keys() if flat.get(k) != base.get(k)}
        changed -= {k for k in changed if k.startswith(HYDRA_BOOKKEEPING)}
        assert changed <= set(values), (preset, changed - set(values))


def test_cfg_job_prints_the_composed_job_config(tmp_path):
    result = run_cli("--cfg", "job", "experiment=iris_mlp", "optim.lr=0.05", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    expected = compose_config(["experiment=iris_mlp", "optim.lr=0.05"])
    assert printed == OmegaConf.to_container(expected, enum_to_str=True)
    assert (printed["model"]["hidden"], printed["optim"]["lr"]) == ([16], 0.05)
    assert "hydra" not in printed
    assert list(tmp_path.iterdir()) == []  # nothing ran: no outputs/, no store


@pytest.mark.slow
def test_an_optimizer_torch_ships_is_one_yaml_file_and_no_code(tmp_path: Path):
    """A user's optim/rmsprop.yaml on Hydra's search path trains and is logged like any other."""
    own = tmp_path / "my_conf" / "optim"
    own.mkdir(parents=True)
    (own / "rmsprop.yaml").write_text("_target_: torch.optim.RMSprop\nlr: 0.01\n")
    result = run_cli(
        "optim=rmsprop",
        f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]",
        "debug=fast",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Epoch   20/20 Cost:" in result.stdout
    (run,) = runs_of(sqlite_uri(tmp_path / "mlruns"))
    assert run.info.status == "FINISHED"
    assert run.data.params["optim"] == "rmsprop"
    assert run.data.params["optim._target_"] == "torch.optim.RMSprop"
    assert run.data.params["optim.lr"] == "0.01"
    bad = run_cli(
        "optim=rmsprop", "optim.lr=-1", f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]",
        cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "optim.lr must be > 0" in bad.stderr


def test_a_target_that_cannot_be_built_is_one_config_error(tmp_path):
    uri = sqlite_uri(tmp_path)
    with pytest.raises(ConfigError, match=r"optim \(torch.optim.NoSuch\) cannot be built"):
        train_into(uri, "optim._target_=torch.optim.NoSuch")
    assert not (tmp_path / "mlflow.db").exists()  # nothing was created


def test_a_target_called_with_keys_it_does_not_take_is_one_config_error(tmp_path):
    """The node is built by calling its target with its values (not through ``instantiate``):
    the error is the same one line, naming the key."""
    uri = sqlite_uri(tmp_path)
    expected = r"optim \(torch.optim.Adam\) cannot be built: .*unexpected keyword .*'momentum'"
    with pytest.raises(ConfigError, match=expected):
        train_into(uri, "optim._target_=torch.optim.Adam")  # SGD's keys: momentum, nesterov
    assert not (tmp_path / "mlflow.db").exists()


@dataclass
class QueueConf:  # stands for hydra-submitit-launcher's SlurmQueueConf
    partition: str = "debug"


def test_a_config_whose_class_was_loaded_again_is_still_copied(monkeypatch):
    """On a Slurm node, Hydra's plugin scan executes the submitit launcher's config module a
    second time: the structured config's class is then not the one its module names, and
    pickle refuses it. The sweep's copies of configs deep-copy it instead."""
    config = OmegaConf.create({"launcher": OmegaConf.structured(QueueConf), "lr": 0.1})
    monkeypatch.setattr(sys.modules[__name__], "QueueConf", type("QueueConf", (), {}))
    with pytest.raises(pickle.PicklingError):
        pickle.dumps(config)
    kept = keep(config)
    copies = [copy_of(kept), copy_of(kept), deep_copy(config)]
    copies[0].lr = 0.5
    assert [c.lr for c in copies] == [0.5, 0.1, 0.1]
    assert all(c.launcher.partition == "debug" for c in copies)
    assert OmegaConf.get_type(copies[1].launcher).__name__ == "QueueConf"
