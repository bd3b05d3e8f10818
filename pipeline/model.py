"""Models, sized from the data."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from pipeline.config import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class Standardize(nn.Module):
    """(x - mean) / std with the training split's statistics, kept in the saved model."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def softmax(cfg: DictConfig, n_features: int, n_classes: int) -> nn.Module:
    """Softmax regression: logits = x W^T + b (the softmax lives in the loss)."""
    return nn.Linear(n_features, n_classes, bias=cfg.bias)


def mlp(cfg: DictConfig, n_features: int, n_classes: int) -> nn.Module:
    """Hidden layers (linear, activation, dropout), then a linear layer to the logits."""
    layers: list[nn.Module] = []
    width = n_features
    for hidden in cfg.hidden:
        layers += [nn.Linear(width, hidden), ACTIVATIONS[cfg.activation]()]
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, n_classes))


BUILDERS = {"softmax": softmax, "mlp": mlp}


def build_model(cfg: DictConfig, n_features: int, n_classes: int) -> nn.Module:
    if cfg.name not in BUILDERS:
        raise ConfigError(
            f"Config error: unknown model.name {cfg.name!r}. Fix: use one of {sorted(BUILDERS)}"
        )
    return BUILDERS[cfg.name](cfg, n_features, n_classes)
