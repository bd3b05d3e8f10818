"""Typed schemas for the YAML files in ``conf/``, registered in Hydra's ConfigStore.

The YAML files hold the values; the dataclasses here hold the types. Each shipped group file
extends its schema (``defaults: [/schema/<group>/<name>@_here_]``), so a wrong type or an
unknown key fails while Hydra composes the config. Objects are built from the ``_target_``
entries with ``hydra.utils.instantiate``. A file of your own in a group folder on Hydra's search
path needs no schema: any ``_target_`` with its keyword arguments works.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Dict, List

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# Config nodes that say where and how a run is tracked, not what is trained: they are not
# params, not part of a run's identity, and not in its name.
RUN_SETTINGS = ("tracking", "sweep", "checkpoint")


class Device(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Activation(Enum):
    relu = "relu"
    tanh = "tanh"
    gelu = "gelu"


class BuiltinSet(Enum):
    iris = "iris"
    wine = "wine"
    digits = "digits"


class Direction(Enum):
    """Optuna's words: a sweep minimizes or maximizes its metric."""

    minimize = "minimize"
    maximize = "maximize"


class SweepMetric(Enum):
    """What a run returns to a sweeper, and what picks a sweep's best run."""

    objective = "objective"  # the validation cost, else the final training cost
    final_cost = "final_cost"
    final_accuracy = "final_accuracy"
    test_cost = "test_cost"
    test_accuracy = "test_accuracy"
    test_macro_f1 = "test_macro_f1"  # the classes' mean F1: for imbalanced data
    val_macro_f1 = "val_macro_f1"


# Metrics where higher is better: a sweep by one of them maximizes.
HIGHER_IS_BETTER = {
    SweepMetric.final_accuracy,
    SweepMetric.test_accuracy,
    SweepMetric.test_macro_f1,
    SweepMetric.val_macro_f1,
}


@dataclass
class DataConfig:
    _target_: str = MISSING
    val_fraction: float = MISSING  # held out for per-epoch validation metrics
    test_fraction: float = MISSING  # held out for the final test metrics
    split_seed: int = MISSING  # fixed apart from `seed`, so a seed sweep shares the splits
    standardize: bool = MISSING  # mean/std of the training split, saved with the model


@dataclass
class ToyDataConfig(DataConfig):
    pass


@dataclass
class BuiltinDataConfig(DataConfig):
    dataset: BuiltinSet = MISSING


@dataclass
class CsvDataConfig(DataConfig):
    path: str = MISSING
    label: str = MISSING
    features: List[str] | None = MISSING
    delimiter: str = MISSING
    header: bool = MISSING


@dataclass
class ParquetDataConfig(DataConfig):
    path: str = MISSING
    label: str = MISSING
    features: List[str] | None = MISSING


@dataclass
class SyntheticDataConfig(DataConfig):
    n_samples: int = MISSING
    n_features: int = MISSING
    n_classes: int = MISSING
    separation: float = MISSING
    seed: int = MISSING


@dataclass
class SoftmaxModelConfig:
    _target_: str = MISSING
    bias: bool = MISSING


@dataclass
class MlpModelConfig:
    _target_: str = MISSING
    hidden: List[int] = MISSING
    activation: Activation = MISSING
    dropout: float = MISSING


@dataclass
class OptimConfig:
    _target_: str = MISSING
    lr: float = MISSING


@dataclass
class SGDConfig(OptimConfig):
    momentum: float = MISSING
    nesterov: bool = MISSING
    weight_decay: float = MISSING


@dataclass
class AdamConfig(OptimConfig):
    betas: List[float] = MISSING
    eps: float = MISSING
    weight_decay: float = MISSING


@dataclass
class LBFGSConfig(OptimConfig):
    max_iter: int = MISSING
    history_size: int = MISSING
    line_search_fn: str | None = MISSING


@dataclass
class NoSchedulerConfig:
    _target_: str | None = None  # a constant learning rate


@dataclass
class StepLRConfig:
    _target_: str = MISSING
    step_size: int = MISSING
    gamma: float = MISSING


@dataclass
class MultiStepLRConfig:
    _target_: str = MISSING
    milestones: List[int] = MISSING
    gamma: float = MISSING


@dataclass
class ExponentialLRConfig:
    _target_: str = MISSING
    gamma: float = MISSING


@dataclass
class CosineLRConfig:
    _target_: str = MISSING
    T_max: int = MISSING  # torch's keyword
    eta_min: float = MISSING
    warmup_epochs: int = MISSING  # linear warm-up first (LinearLR, then SequentialLR)
    warmup_start_factor: float = MISSING  # the warm-up's first lr: this times optim.lr


@dataclass
class PlateauLRConfig:
    _target_: str = MISSING
    mode: str = MISSING
    factor: float = MISSING
    patience: int = MISSING
    threshold: float = MISSING
    cooldown: int = MISSING
    min_lr: float = MISSING


class Monitor(Enum):
    """What early stopping watches (measured on the validation split each epoch)."""

    val_cost = "val_cost"
    val_accuracy = "val_accuracy"


class Mode(Enum):
    min = "min"
    max = "max"


@dataclass
class EarlyStoppingConfig:
    patience: int | None = MISSING  # null: off
    monitor: Monitor = MISSING
    mode: Mode = MISSING
    min_delta: float = MISSING
    restore_best: bool = MISSING  # the logged model and final metrics are the best epoch's


@dataclass
class LossConfig:
    class_weights: Any = MISSING  # null | balanced | [w_0, w_1, ...] (one per class)
    label_smoothing: float = MISSING  # in [0, 1)


@dataclass
class TrackingConfig:
    uri: str | None = MISSING
    experiment: str = MISSING
    run_name: str | None = MISSING
    tags: Dict[str, str] = MISSING
    flush_every_s: float = MISSING
    resume: str | None = MISSING  # a run id: continue that run (python -m pipeline.resume)
    system_metrics: bool = MISSING  # CPU, memory (GPU with nvidia-ml-py) as system/* metrics
    system_metrics_every_s: float = MISSING  # seconds between samples


@dataclass
class SweepConfig:
    metric: SweepMetric = MISSING
    direction: Direction = MISSING
    resume: bool = MISSING  # skip jobs already FINISHED, resume interrupted ones


@dataclass
class CheckpointConfig:
    every_s: float = MISSING  # seconds of training between checkpoints
    keep: bool = MISSING  # keep the last checkpoint once the run is FINISHED


@dataclass
class CvConfig:
    folds: int | None = MISSING  # k-fold cross-validation on the training part; null: off
    stratified: bool = MISSING  # each fold keeps the classes' proportions


@dataclass
class Config:
    data: Any = MISSING
    model: Any = MISSING
    optim: Any = MISSING
    scheduler: Any = MISSING
    seed: int = MISSING
    epochs: int = MISSING
    batch_size: int | None = MISSING
    log_every: int = MISSING
    device: Device = MISSING
    threads: int = MISSING
    early_stopping: EarlyStoppingConfig = MISSING
    loss: LossConfig = MISSING
    tracking: TrackingConfig = MISSING
    sweep: SweepConfig = MISSING
    checkpoint: CheckpointConfig = MISSING
    cv: CvConfig = MISSING


SCHEMAS = [
    ("data", "toy", ToyDataConfig),
    ("data", "builtin", BuiltinDataConfig),
    ("data", "csv", CsvDataConfig),
    ("data", "parquet", ParquetDataConfig),
    ("data", "synthetic", SyntheticDataConfig),
    ("model", "softmax", SoftmaxModelConfig),
    ("model", "mlp", MlpModelConfig),
    ("optim", "sgd", SGDConfig),
    ("optim", "adam", AdamConfig),
    ("optim", "lbfgs", LBFGSConfig),
    ("scheduler", "none", NoSchedulerConfig),
    ("scheduler", "step", StepLRConfig),
    ("scheduler", "multistep", MultiStepLRConfig),
    ("scheduler", "exponential", ExponentialLRConfig),
    ("scheduler", "cosine", CosineLRConfig),
    ("scheduler", "plateau", PlateauLRConfig),
]


def register_configs() -> None:
    """Register the schemas that the YAML files in conf/ extend (``/schema/<group>/<name>``)."""
    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    for group, name, node in SCHEMAS:
        store.store(group=f"schema/{group}", name=name, node=node)
