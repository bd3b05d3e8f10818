"""Optimizers: the config group's fields are the torch optimizer's keyword arguments."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.config import ConfigError

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "lbfgs": torch.optim.LBFGS,
}


def build_optimizer(cfg: DictConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.name not in OPTIMIZERS:
        raise ConfigError(
            f"Config error: unknown optim.name {cfg.name!r}. Fix: use one of {sorted(OPTIMIZERS)}"
        )
    kwargs = OmegaConf.to_container(cfg)
    del kwargs["name"]
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return OPTIMIZERS[cfg.name](params, **kwargs)
