"""Models that torch does not ship (softmax regression itself is ``torch.nn.Linear``), and the
standardization layer that the saved model starts with.

Model files name their ``_target_``; the training stage passes the sizes the data gives as
``in_features`` and ``out_features``, as ``torch.nn.Linear`` names them.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.config.schema import Activation

ACTIVATIONS = {Activation.relu: nn.ReLU, Activation.tanh: nn.Tanh, Activation.gelu: nn.GELU}


class Standardize(nn.Module):
    """(x - mean) / std with the training split's statistics, kept in the saved model."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward_(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` in place: the same values, bit for bit, without a copy of ``x``."""
        return x.sub_(self.mean).div_(self.std)


def mlp(
    in_features: int,
    out_features: int,
    hidden: list[int],
    activation: Activation | str,
    dropout: float,
) -> nn.Module:
    """Hidden layers (linear, activation, dropout), then a linear layer to the logits."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), ACTIVATIONS[Activation(activation)]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    return nn.Sequential(*layers, nn.Linear(width, out_features))
