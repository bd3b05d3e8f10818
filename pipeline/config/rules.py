"""Value rules that a type cannot express (``optim.lr > 0``, ...), checked before any run exists.

Rules are keyed by the dotted config key, so they hold for every file of a group, your own
included: an ``optim`` file of yours still needs ``lr > 0``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from pipeline.config.schema import Device, SweepMetric
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
    ("tracking.flush_every_s", lambda v: v > 0, "> 0", "5"),
    ("checkpoint.every_s", lambda v: v > 0, "> 0", "60"),
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
    _check_combinations(cfg)


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
    metric = cfg.sweep.metric
    if metric in (SweepMetric.test_cost, SweepMetric.test_accuracy) and not held_out_test(cfg):
        raise ConfigError(
            f"Config error: sweep.metric={metric.name} needs a test split. "
            "Fix: data.test_fraction=0.2, or sweep.metric=objective"
        )
    if cfg.device == Device.cuda and not _cuda_available():
        raise ConfigError(
            "Config error: device=cuda but no CUDA GPU is available. "
            "Fix: use device=auto or device=cpu"
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
    known = {f.name for f in fields(schema)} if is_dataclass(schema) else set(node)
    for key, value in node.items():
        if key not in known:
            yield f"{prefix}{key}"
        elif isinstance(value, DictConfig):
            yield from unknown_keys(value, f"{prefix}{key}.")
