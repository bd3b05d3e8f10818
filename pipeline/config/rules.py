"""Value rules that a type cannot express (``optim.lr > 0``, ...), checked before any run exists.

Rules are keyed by the dotted config key, so they hold for every file of a group, your own
included: an ``optim`` file of yours still needs ``lr > 0``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.config.schema import HIGHER_IS_BETTER, Device, Direction, Mode, Monitor, SweepMetric
from pipeline.errors import ConfigError

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
    ("model.dropout", lambda v: 0 <= v < 1, "in [0, 1)", "0.1"),
    ("optim.max_iter", lambda v: v >= 1, ">= 1", "20"),
    ("optim.history_size", lambda v: v >= 1, ">= 1", "100"),
    ("optim.line_search_fn", lambda v: v == "strong_wolfe", "strong_wolfe or null", "null"),
    ("cv.folds", lambda v: v >= 2, ">= 2 (or null: no cross-validation)", "5"),
    ("log_every", lambda v: v >= 1, ">= 1", "100"),
    ("threads", lambda v: v >= 1, ">= 1", "1"),
    ("seed", lambda v: 0 <= v < 2**32, "in [0, 2**32)", "1"),
    ("optim.lr", lambda v: v > 0, "> 0", "0.1"),
    ("optim.weight_decay", lambda v: v >= 0, ">= 0", "0"),
    ("optim.momentum", lambda v: 0 <= v < 1, "in [0, 1)", "0.9"),  # 1 and above diverge
    (
        "optim.betas",
        lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
        "two values in [0, 1)",
        "[0.9,0.999]",
    ),
    ("optim.eps", lambda v: v > 0, "> 0", "1e-8"),
    ("scheduler.step_size", lambda v: v >= 1, ">= 1", "30"),
    ("scheduler.gamma", lambda v: 0 < v <= 1, "in (0, 1]", "0.1"),
    (
        "scheduler.milestones",
        lambda v: len(v) >= 1 and list(v) == sorted(set(v)) and v[0] >= 1,
        "increasing epochs >= 1",
        "[300,600,900]",
    ),
    ("scheduler.T_max", lambda v: v >= 1, ">= 1", "1000"),
    ("scheduler.eta_min", lambda v: v >= 0, ">= 0", "0.0"),
    ("scheduler.warmup_epochs", lambda v: v >= 0, ">= 0", "10"),
    ("scheduler.warmup_start_factor", lambda v: 0 < v <= 1, "in (0, 1]", "0.1"),
    ("scheduler.mode", lambda v: v == "min", "min (it watches the validation cost)", "min"),
    ("scheduler.factor", lambda v: 0 < v < 1, "in (0, 1)", "0.1"),
    ("scheduler.patience", lambda v: v >= 0, ">= 0", "10"),
    ("scheduler.threshold", lambda v: v >= 0, ">= 0", "1e-4"),
    ("scheduler.cooldown", lambda v: v >= 0, ">= 0", "0"),
    ("scheduler.min_lr", lambda v: v >= 0, ">= 0", "0.0"),
    ("early_stopping.patience", lambda v: v >= 1, ">= 1 (or null: off)", "10"),
    ("early_stopping.min_delta", lambda v: v >= 0, ">= 0", "0.0"),
    ("tracking.flush_every_s", lambda v: v > 0, "> 0", "5"),
    ("checkpoint.every_s", lambda v: v > 0, "> 0", "60"),
    ("tracking.experiment", lambda v: bool(v.strip()), "a non-empty name", "softmax-regression"),
    ("tracking.system_metrics_every_s", lambda v: v > 0, "> 0", "10"),
    ("loss.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)", "0.1"),
    (
        "loss.class_weights",
        lambda v: v == "balanced" or _weights(v),
        "null, balanced, or a list of weights >= 0 (one per class, not all 0)",
        "balanced",
    ),
]


def _weights(value: Any) -> bool:
    """A list of numbers >= 0, one of them > 0."""
    numbers = isinstance(value, (list, ListConfig)) and all(
        isinstance(w, (int, float)) and not isinstance(w, bool) for w in value
    )
    return numbers and all(w >= 0 for w in value) and any(w > 0 for w in value)


def validate(cfg: DictConfig) -> None:
    """Check values that the schema's types cannot; raise ConfigError on the first bad one.

    The values are read from one plain copy of ``cfg`` (``to_container``: 0.4 ms, where reading
    each key from ``cfg`` costs ~20 us; a sweep checks every job), or from ``cfg`` itself where
    an interpolation does not resolve. A value that resolves to ``???`` (``${oc.env:VAR,???}``
    with VAR unset) is missing too."""
    try:
        values: Any = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:
        values = None
    missing = OmegaConf.missing_keys(cfg) if values is None else set(missing_keys(values))
    for key in sorted(missing):
        raise ConfigError(f"Config error: {key} is required. Fix: pass {key}=<value>")
    for key in unknown_keys(cfg):
        raise ConfigError(
            f"Config error: unknown key {key!r}. "
            "Fix: remove it, or check its spelling in `python -m pipeline.train --cfg job`"
        )
    for key, test, rule, example in RULES:
        value = OmegaConf.select(cfg, key, default=None) if values is None else select(values, key)
        if value is not None and not test(value):
            shown = list(value) if isinstance(value, (list, ListConfig)) else value
            raise ConfigError(
                f"Config error: {key} must be {rule}, got {shown!r}. Fix: e.g. {key}={example}"
            )
    _check_combinations(cfg)


def missing_keys(values: Any, prefix: str = "") -> Iterator[str]:
    """The keys of a plain config whose value is ``???``, as ``OmegaConf.missing_keys`` names
    them (``a.b``, ``a.list[0]``)."""
    items = values.items() if isinstance(values, dict) else enumerate(values)
    for key, value in items:
        name = f"{prefix}[{key}]" if isinstance(values, list) else f"{prefix}{key}"
        if value == "???":
            yield name.lstrip(".")
        elif isinstance(value, (dict, list)):
            yield from missing_keys(value, f"{name}." if isinstance(value, dict) else name)


def select(values: dict, key: str) -> Any:
    """``OmegaConf.select(cfg, key, default=None)`` on a plain config."""
    for part in key.split("."):
        if not isinstance(values, dict) or part not in values:
            return None
        values = values[part]
    return values


def _check_combinations(cfg: DictConfig) -> None:
    held_out = cfg.data.get("val_fraction", 0) + cfg.data.get("test_fraction", 0)
    if held_out >= 0.9:
        raise ConfigError(
            "Config error: data.val_fraction + data.test_fraction must leave >= 10% to train on. "
            "Fix: e.g. data.val_fraction=0.2 data.test_fraction=0.2"
        )
    if needs_full_batch(cfg.optim) and cfg.batch_size is not None:
        raise ConfigError(
            "Config error: optim=lbfgs needs full-batch training, got batch_size="
            f"{cfg.batch_size}. Fix: batch_size=null, or another optimizer"
        )
    if cfg.optim.get("nesterov") and cfg.optim.get("momentum", 0) == 0:
        raise ConfigError(
            "Config error: optim.nesterov=true needs momentum. "
            "Fix: e.g. optim.momentum=0.9, or optim.nesterov=false"
        )
    _check_controls(cfg)
    _check_sweep_metric(cfg)
    if cfg.tracking.get("system_metrics") and importlib.util.find_spec("psutil") is None:
        raise ConfigError(
            "Config error: tracking.system_metrics=true needs the psutil package. "
            "Fix: pip install psutil, or tracking.system_metrics=false"
        )
    if cfg.device == Device.cuda and not _cuda_available():
        raise ConfigError(
            "Config error: device=cuda but no CUDA GPU is available. "
            "Fix: use device=auto or device=cpu"
        )


def _check_controls(cfg: DictConfig) -> None:
    """Early stopping and a plateau schedule watch the validation split: it must exist (with
    cross-validation, each fold holds out its own). A plateau schedule does not combine with
    cross-validation: the model refit on the whole training part has no validation cost."""
    early = cfg.early_stopping
    if early.patience is not None:
        if not has_validation(cfg) and not cross_validated(cfg):
            raise ConfigError(
                f"Config error: early_stopping.patience={early.patience} watches "
                f"{early.monitor.value}, but the data has no validation split "
                "(data.val_fraction=0). Fix: e.g. data.val_fraction=0.4, or "
                "early_stopping.patience=null"
            )
        wanted = Mode.max if early.monitor == Monitor.val_accuracy else Mode.min
        if early.mode != wanted:
            raise ConfigError(
                f"Config error: early_stopping.monitor={early.monitor.value} needs "
                f"early_stopping.mode={wanted.value}, got {early.mode.value}. "
                f"Fix: early_stopping.mode={wanted.value}"
            )
    target = str(cfg.scheduler.get("_target_") or "")
    if target.endswith("ReduceLROnPlateau"):
        if cross_validated(cfg):
            raise ConfigError(
                f"Config error: scheduler=plateau does not combine with cv.folds={cfg.cv.folds}: "
                "the model refit on the whole training part has no validation cost to step it "
                "on. Fix: another scheduler (e.g. scheduler=cosine), or cv.folds=null"
            )
        if not has_validation(cfg):
            raise ConfigError(
                "Config error: scheduler=plateau watches the validation cost, but the data has no "
                "validation split (data.val_fraction=0). "
                "Fix: e.g. data.val_fraction=0.4, or another scheduler"
            )
        if cfg.scheduler.get("warmup_epochs"):
            raise ConfigError(
                "Config error: scheduler.warmup_epochs does not combine with ReduceLROnPlateau. "
                "Fix: scheduler.warmup_epochs=0, or scheduler=cosine"
            )


def has_validation(cfg: DictConfig) -> bool:
    return cfg.data.get("val_fraction", 0) > 0


def cross_validated(cfg: DictConfig) -> bool:
    return OmegaConf.select(cfg, "cv.folds", default=None) is not None


def _check_sweep_metric(cfg: DictConfig) -> None:
    """The metric exists for this data, and is ranked the way it is better."""
    metric, direction = cfg.sweep.metric, cfg.sweep.direction
    needs_test = (SweepMetric.test_cost, SweepMetric.test_accuracy, SweepMetric.test_macro_f1)
    if metric in needs_test and not held_out_test(cfg):
        raise ConfigError(
            f"Config error: sweep.metric={metric.name} needs a test split. "
            "Fix: data.test_fraction=0.2, or sweep.metric=objective"
        )
    if metric == SweepMetric.val_macro_f1 and not (has_validation(cfg) or cross_validated(cfg)):
        raise ConfigError(
            "Config error: sweep.metric=val_macro_f1 needs a validation split. "
            "Fix: data.val_fraction=0.2, or sweep.metric=objective"
        )
    if metric in HIGHER_IS_BETTER and direction == Direction.minimize:
        raise ConfigError(
            f"Config error: sweep.metric={metric.name} is better when higher, but "
            "sweep.direction=minimize. Fix: sweep.direction=maximize"
        )


def needs_full_batch(optim: DictConfig) -> bool:
    """L-BFGS re-evaluates the whole objective in each step: no mini-batches."""
    return str(optim.get("_target_", "")).rsplit(".", 1)[-1] == "LBFGS"


def held_out_test(cfg: DictConfig) -> bool:
    return cfg.data.get("test_fraction", 0) > 0


def _cuda_available() -> bool:
    import torch  # only when cuda is asked for: a config check needs no torch otherwise

    return torch.cuda.is_available()


def unknown_keys(node: DictConfig, prefix: str = "") -> Iterator[str]:
    """Keys that their node's schema does not declare (``+key=value`` can add them)."""
    schema = OmegaConf.get_type(node)
    known = {f.name for f in fields(schema)} if is_dataclass(schema) else None
    for key in node:
        if known is not None and key not in known:
            yield f"{prefix}{key}"
            continue
        child = node._get_node(key)  # the node, not its value: nothing resolved or converted
        if isinstance(child, DictConfig):
            yield from unknown_keys(child, f"{prefix}{key}.")
