"""Typed config schemas (registered in Hydra's ConfigStore) and value checks.

The YAML files in ``conf/`` stay readable; each extends one schema below, so a wrong
type or an unknown key is rejected while Hydra composes the config. ``validate`` then
checks the values that a type cannot express (lr > 0, epochs >= 1, ...), before any
MLflow run exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional

import torch
from hydra.core.config_store import ConfigStore
from hydra.errors import CompactHydraException
from omegaconf import MISSING, DictConfig


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
    uri: Optional[str] = None  # null: $MLFLOW_TRACKING_URI, else sqlite under ./mlruns
    experiment: str = "softmax-regression"
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


def register_configs() -> None:
    """Register the schemas that the YAML files in conf/ extend."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="data", name="toy_schema", node=ToyDataConfig)
    cs.store(group="model", name="softmax_schema", node=SoftmaxModelConfig)
    cs.store(group="optim", name="sgd_schema", node=SGDConfig)
    cs.store(group="optim", name="adam_schema", node=AdamConfig)


def _require(ok: bool, key: str, rule: str, value: Any, example: str) -> None:
    if not ok:
        raise ConfigError(f"Config error: {key} must be {rule}, got {value!r}. Fix: e.g. {example}")


def validate(cfg: DictConfig) -> None:
    """Check values that the schema's types cannot; raise ConfigError on the first bad one."""
    _require(cfg.epochs >= 1, "epochs", ">= 1", cfg.epochs, "epochs=1000")
    _require(cfg.log_every >= 1, "log_every", ">= 1", cfg.log_every, "log_every=100")
    _require(cfg.threads >= 1, "threads", ">= 1", cfg.threads, "threads=1")
    _require(0 <= cfg.seed < 2**32, "seed", "in [0, 2**32)", cfg.seed, "seed=1")
    _validate_optim(cfg.optim)
    _require(cfg.tracking.flush_every_s > 0, "tracking.flush_every_s", "> 0",
             cfg.tracking.flush_every_s, "tracking.flush_every_s=5")
    _require(bool(cfg.tracking.experiment.strip()), "tracking.experiment", "a non-empty name",
             cfg.tracking.experiment, "tracking.experiment=softmax-regression")
    if cfg.device == Device.cuda and not torch.cuda.is_available():
        raise ConfigError("Config error: device=cuda but no CUDA GPU is available. "
                          "Fix: use device=auto or device=cpu")


def _validate_optim(optim: DictConfig) -> None:
    _require(optim.lr > 0, "optim.lr", "> 0", optim.lr, "optim.lr=0.1")
    _require(optim.weight_decay >= 0, "optim.weight_decay", ">= 0", optim.weight_decay,
             "optim.weight_decay=0")
    if optim.name == "sgd":
        _require(optim.momentum >= 0, "optim.momentum", ">= 0", optim.momentum, "optim.momentum=0.9")
        _require(not optim.nesterov or optim.momentum > 0, "optim.nesterov",
                 "false when optim.momentum is 0", optim.nesterov,
                 "optim.momentum=0.9 optim.nesterov=true")
    if optim.name == "adam":
        betas = list(optim.betas)
        _require(len(betas) == 2 and all(0 <= b < 1 for b in betas), "optim.betas",
                 "two values in [0, 1)", betas, "optim.betas=[0.9,0.999]")
        _require(optim.eps > 0, "optim.eps", "> 0", optim.eps, "optim.eps=1e-8")
