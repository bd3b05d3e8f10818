"""Typed config schemas (registered in Hydra's ConfigStore) and value checks.

The YAML files in ``conf/`` stay readable; each extends one schema below, so a wrong
type or an unknown key is rejected while Hydra composes the config. ``validate`` then
checks the values that a type cannot express (lr > 0, epochs >= 1, ...), before any
MLflow run exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, Dict, List

import torch
from hydra.core.config_store import ConfigStore
from hydra.errors import CompactHydraException
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf


class PipelineError(CompactHydraException):
    """A user-facing error: Hydra prints its message as one line and exits with status 1."""


class ConfigError(PipelineError):
    """A config value that is well-typed but not allowed."""


class Device(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@dataclass
class DataConfig:
    name: str = MISSING


@dataclass
class ToyDataConfig(DataConfig):
    """The tutorial's 8 samples, 4 features, 3 classes."""

    name: str = "toy"


@dataclass
class ModelConfig:
    name: str = MISSING


@dataclass
class SoftmaxModelConfig(ModelConfig):
    """One linear layer; its sizes come from the data."""

    name: str = "softmax"
    bias: bool = True


@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = 0.0


@dataclass
class SGDConfig(OptimConfig):
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False


@dataclass
class AdamConfig(OptimConfig):
    name: str = "adam"
    lr: float = 0.001
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class TrackingConfig:
    uri: str | None = None  # null: $MLFLOW_TRACKING_URI, else sqlite under ./mlruns
    experiment: str = "softmax-regression"
    run_name: str | None = None  # null: the job's overrides, e.g. "optim.lr=0.01,seed=2"
    tags: Dict[str, str] = field(default_factory=dict)  # extra run tags
    flush_every_s: float = 5.0  # how often buffered metrics are written during training


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    optim: OptimConfig = MISSING
    seed: int = 1
    epochs: int = 1000
    log_every: int = 100
    device: Device = Device.auto
    threads: int = 1  # torch CPU threads; one is fastest and steadiest for small models
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


SCHEMAS = [
    ("data", "toy", ToyDataConfig),
    ("model", "softmax", SoftmaxModelConfig),
    ("optim", "sgd", SGDConfig),
    ("optim", "adam", AdamConfig),
]


def register_configs() -> None:
    """Register the schemas that the YAML files in conf/ extend (``/schema/<group>/<name>``)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, name, node in SCHEMAS:
        cs.store(group=f"schema/{group}", name=name, node=node)


# (key, test, rule, example): checked when the key exists in the composed config.
RULES: list[tuple[str, Callable[[Any], bool], str, str]] = [
    ("epochs", lambda v: v >= 1, ">= 1", "1000"),
    ("log_every", lambda v: v >= 1, ">= 1", "100"),
    ("threads", lambda v: v >= 1, ">= 1", "1"),
    ("seed", lambda v: 0 <= v < 2**32, "in [0, 2**32)", "1"),
    ("optim.lr", lambda v: v > 0, "> 0", "0.1"),
    ("optim.weight_decay", lambda v: v >= 0, ">= 0", "0"),
    ("optim.momentum", lambda v: v >= 0, ">= 0", "0.9"),
    ("optim.betas", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
     "two values in [0, 1)", "[0.9,0.999]"),
    ("optim.eps", lambda v: v > 0, "> 0", "1e-8"),
    ("tracking.flush_every_s", lambda v: v > 0, "> 0", "5"),
    ("tracking.experiment", lambda v: bool(v.strip()), "a non-empty name", "softmax-regression"),
]  # fmt: skip


def validate(cfg: DictConfig) -> None:
    """Check values that the schema's types cannot; raise ConfigError on the first bad one."""
    for key in unknown_keys(cfg):
        raise ConfigError(
            f"Config error: unknown key {key!r}. "
            "Fix: remove it, or check its spelling in `python -m pipeline.train --cfg job`"
        )
    for key, test, rule, example in RULES:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not test(value):
            shown = list(value) if isinstance(value, ListConfig) else value
            raise ConfigError(
                f"Config error: {key} must be {rule}, got {shown!r}. Fix: e.g. {key}={example}"
            )
    if cfg.optim.get("nesterov") and cfg.optim.momentum == 0:
        raise ConfigError(
            "Config error: optim.nesterov=true needs momentum. "
            "Fix: e.g. optim.momentum=0.9, or optim.nesterov=false"
        )
    if cfg.device == Device.cuda and not torch.cuda.is_available():
        raise ConfigError(
            "Config error: device=cuda but no CUDA GPU is available. "
            "Fix: use device=auto or device=cpu"
        )


def unknown_keys(node: DictConfig, prefix: str = "") -> Iterator[str]:
    """Keys that their node's schema does not declare (``+key=value`` can add them)."""
    schema = OmegaConf.get_type(node)
    known = {f.name for f in fields(schema)} if is_dataclass(schema) else set(node)
    for key, value in node.items():
        if key not in known:
            yield f"{prefix}{key}"
        elif isinstance(value, DictConfig):
            yield from unknown_keys(value, f"{prefix}{key}.")
