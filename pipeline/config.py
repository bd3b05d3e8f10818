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

from hydra.core.config_store import ConfigStore
from hydra.errors import CompactHydraException
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf


class PipelineError(CompactHydraException):
    """A user-facing error: Hydra prints its message as one line and exits with status 1."""


def first_line(err: BaseException) -> str:
    """An exception as one line: its message's first line, or its type."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class ConfigError(PipelineError):
    """A config value that is well-typed but not allowed."""


class Device(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@dataclass
class DataConfig:
    name: str = MISSING
    val_fraction: float = 0.0  # held out for per-epoch validation metrics
    test_fraction: float = 0.0  # held out for the final test metrics
    split_seed: int = 0  # stratified splits; fixed apart from `seed` so a seed sweep shares them
    standardize: bool = False  # fit mean/std on the training split; saved with the model


@dataclass
class ToyDataConfig(DataConfig):
    """The tutorial's 8 samples, 4 features, 3 classes (no split: the reference stays exact)."""

    name: str = "toy"


@dataclass
class BuiltinDataConfig(DataConfig):
    """iris, wine or digits, as scikit-learn ships them (no download)."""

    val_fraction: float = 0.2
    test_fraction: float = 0.2
    standardize: bool = True


@dataclass
class CsvDataConfig(DataConfig):
    """The user's own file: one row per sample, a label column, numeric feature columns."""

    name: str = "csv"
    path: str = MISSING
    label: str = "label"  # the label column's name (its 0-based index when header=false)
    features: List[str] | None = None  # null: every other column
    delimiter: str = ","
    header: bool = True
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    standardize: bool = True


@dataclass
class SyntheticDataConfig(DataConfig):
    """Gaussian blobs around random class centres, for scale tests and benchmarks."""

    name: str = "synthetic"
    n_samples: int = 10000
    n_features: int = 20
    n_classes: int = 5
    separation: float = 1.0  # distance scale of the class centres
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1


@dataclass
class ModelConfig:
    name: str = MISSING


@dataclass
class SoftmaxModelConfig(ModelConfig):
    """One linear layer; its sizes come from the data."""

    name: str = "softmax"
    bias: bool = True


@dataclass
class MlpModelConfig(ModelConfig):
    """Hidden layers between the input and the softmax layer."""

    name: str = "mlp"
    hidden: List[int] = field(default_factory=lambda: [64])
    activation: str = "relu"  # relu | tanh | gelu
    dropout: float = 0.0


@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = MISSING


@dataclass
class SGDConfig(OptimConfig):
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0


@dataclass
class AdamConfig(OptimConfig):
    name: str = "adam"
    lr: float = 0.001
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 0.01


@dataclass
class LBFGSConfig(OptimConfig):
    """Full batch only; each epoch is one step of up to max_iter iterations."""

    name: str = "lbfgs"
    lr: float = 1.0
    max_iter: int = 20
    history_size: int = 100
    line_search_fn: str | None = "strong_wolfe"


@dataclass
class TrackingConfig:
    uri: str | None = None  # null: $MLFLOW_TRACKING_URI, else sqlite under ./mlruns
    experiment: str = "softmax-regression"
    run_name: str | None = None  # null: the job's overrides, e.g. "optim.lr=0.01,seed=2"
    tags: Dict[str, str] = field(default_factory=dict)  # extra run tags
    flush_every_s: float = 5.0  # how often buffered metrics are written during training
    best_metric: str = "objective"  # a sweep's best run has the lowest/highest of this metric
    best_mode: str = "min"  # min | max


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    optim: OptimConfig = MISSING
    seed: int = 1
    epochs: int = 1000
    batch_size: int | None = None  # null: full batch (the reference); else shuffled mini-batches
    log_every: int = 100
    device: Device = Device.auto
    threads: int = 1  # torch CPU threads; one is fastest and steadiest for small models
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


SCHEMAS = [
    ("data", "toy", ToyDataConfig),
    ("data", "builtin", BuiltinDataConfig),
    ("data", "csv", CsvDataConfig),
    ("data", "synthetic", SyntheticDataConfig),
    ("model", "softmax", SoftmaxModelConfig),
    ("model", "mlp", MlpModelConfig),
    ("optim", "sgd", SGDConfig),
    ("optim", "adam", AdamConfig),
    ("optim", "adamw", AdamWConfig),
    ("optim", "lbfgs", LBFGSConfig),
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
    ("batch_size", lambda v: v >= 1, ">= 1 (or null for full batch)", "32"),
    ("data.val_fraction", lambda v: 0 <= v < 1, "in [0, 1)", "0.2"),
    ("data.test_fraction", lambda v: 0 <= v < 1, "in [0, 1)", "0.2"),
    ("data.n_samples", lambda v: v >= 2, ">= 2", "10000"),
    ("data.n_features", lambda v: v >= 1, ">= 1", "20"),
    ("data.n_classes", lambda v: v >= 2, ">= 2", "5"),
    ("data.separation", lambda v: v > 0, "> 0", "1.0"),
    ("model.hidden", lambda v: len(v) >= 1 and all(h >= 1 for h in v), "sizes >= 1", "[64,32]"),
    ("model.activation", lambda v: v in ("relu", "tanh", "gelu"), "relu, tanh or gelu", "relu"),
    ("model.dropout", lambda v: 0 <= v < 1, "in [0, 1)", "0.1"),
    ("optim.max_iter", lambda v: v >= 1, ">= 1", "20"),
    ("optim.history_size", lambda v: v >= 1, ">= 1", "100"),
    ("optim.line_search_fn", lambda v: v == "strong_wolfe", "strong_wolfe or null", "null"),
    ("log_every", lambda v: v >= 1, ">= 1", "100"),
    ("threads", lambda v: v >= 1, ">= 1", "1"),
    ("seed", lambda v: 0 <= v < 2**32, "in [0, 2**32)", "1"),
    ("optim.lr", lambda v: v > 0, "> 0", "0.1"),
    ("optim.weight_decay", lambda v: v >= 0, ">= 0", "0"),
    ("optim.momentum", lambda v: v >= 0, ">= 0", "0.9"),
    (
        "optim.betas",
        lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
        "two values in [0, 1)",
        "[0.9,0.999]",
    ),
    ("optim.eps", lambda v: v > 0, "> 0", "1e-8"),
    ("tracking.flush_every_s", lambda v: v > 0, "> 0", "5"),
    ("tracking.best_mode", lambda v: v in ("min", "max"), "min or max", "min"),
    ("tracking.experiment", lambda v: bool(v.strip()), "a non-empty name", "softmax-regression"),
]


def validate(cfg: DictConfig) -> None:
    """Check values that the schema's types cannot; raise ConfigError on the first bad one."""
    for key in sorted(OmegaConf.missing_keys(cfg)):
        raise ConfigError(f"Config error: {key} is required. Fix: pass {key}=<value>")
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
    if cfg.data.val_fraction + cfg.data.test_fraction >= 0.9:
        raise ConfigError(
            "Config error: data.val_fraction + data.test_fraction must leave >= 10% to train on. "
            "Fix: e.g. data.val_fraction=0.2 data.test_fraction=0.2"
        )
    if cfg.optim.name == "lbfgs" and cfg.batch_size is not None:
        raise ConfigError(
            "Config error: optim=lbfgs needs full-batch training, got batch_size="
            f"{cfg.batch_size}. Fix: batch_size=null, or another optimizer"
        )
    if cfg.optim.get("nesterov") and cfg.optim.momentum == 0:
        raise ConfigError(
            "Config error: optim.nesterov=true needs momentum. "
            "Fix: e.g. optim.momentum=0.9, or optim.nesterov=false"
        )
    if cfg.device == Device.cuda and not _cuda_available():
        raise ConfigError(
            "Config error: device=cuda but no CUDA GPU is available. "
            "Fix: use device=auto or device=cpu"
        )


def _cuda_available() -> bool:
    import torch  # only when cuda is asked for: a config check needs no torch otherwise

    return torch.cuda.is_available()


def unknown_keys(node: DictConfig, prefix: str = "") -> Iterator[str]:
    """Keys that their node's schema does not declare (``+key=value`` can add them)."""
    schema = OmegaConf.get_type(node)
    known = {f.name for f in fields(schema)} if is_dataclass(schema) else set(node)
    for key, value in node.items():
        if key not in known:
            yield f"{prefix}{key}"
        elif isinstance(value, DictConfig):
            yield from unknown_keys(value, f"{prefix}{key}.")
