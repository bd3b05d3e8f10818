"""Models, sized from the data."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from pipeline.config import ConfigError


def softmax(cfg: DictConfig, n_features: int, n_classes: int) -> nn.Module:
    """Softmax regression: logits = x W^T + b (the softmax lives in the loss)."""
    return nn.Linear(n_features, n_classes, bias=cfg.bias)


BUILDERS = {"softmax": softmax}


def build_model(cfg: DictConfig, n_features: int, n_classes: int) -> nn.Module:
    if cfg.name not in BUILDERS:
        raise ConfigError(
            f"Config error: unknown model.name {cfg.name!r}. Fix: use one of {sorted(BUILDERS)}"
        )
    return BUILDERS[cfg.name](cfg, n_features, n_classes)
