"""A resolved config as a run's params: flat dotted keys, less the run settings."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.config.schema import RUN_SETTINGS


def flatten_dict(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}"""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def is_run_setting(key: str) -> bool:
    """Where and how a run is tracked (``tracking.*``, ``sweep.*``, ``checkpoint.*``), not what
    it trains."""
    return key.split(".", 1)[0] in RUN_SETTINGS


def params(cfg: DictConfig, choices: dict[str, str]) -> dict[str, Any]:
    """The resolved config as {dotted.key: value}, less the run settings, plus the group choices
    (``optim: sgd``): what a run logs as params."""
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    values = {k: v for k, v in flatten_dict(container).items() if not is_run_setting(k)}
    return {**choices, **values}
