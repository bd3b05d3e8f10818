"""The cost a run minimizes: cross-entropy, its classes weighted and its labels smoothed as the
``loss`` block says (``F.cross_entropy``'s ``weight`` and ``label_smoothing``).

The defaults (no weights, no smoothing) call ``F.cross_entropy(logits, labels)`` exactly as the
reference does. The same loss gives every cost a run logs (``cost``, ``val_cost``,
``test_cost``, ``objective``): the number the run minimizes, measured on each split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.errors import ConfigError

BALANCED = "balanced"


@dataclass(frozen=True)
class Loss:
    """Cross-entropy with one weight per class (None: all 1) and label smoothing."""

    weight: torch.Tensor | None = None
    label_smoothing: float = 0.0

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.plain:  # the reference's call, bit for bit
            return F.cross_entropy(logits, labels)
        return F.cross_entropy(
            logits, labels, weight=self.weight, label_smoothing=self.label_smoothing
        )

    @property
    def plain(self) -> bool:
        return self.weight is None and self.label_smoothing == 0

    @property
    def weights(self) -> list[float] | None:
        """The class weights as numbers (what the run logs), or None."""
        return None if self.weight is None else self.weight.tolist()


def balanced_weights(labels: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
    """scikit-learn's "balanced" weights: n / (k * n_c) for each class c of the ``labels``."""
    k = len(class_names)
    counts = torch.bincount(labels, minlength=k)
    if (counts == 0).any():
        missing = ", ".join(str(class_names[c]) for c in (counts == 0).nonzero()[:, 0].tolist())
        raise ConfigError(
            f"Config error: loss.class_weights=balanced, but class {missing} has no sample in "
            "the training split. Fix: give one weight per class, e.g. "
            f"loss.class_weights=[{','.join(['1'] * k)}]"
        )
    return len(labels) / (k * counts.double())


def class_weights(
    spec: str | Sequence[float] | None, labels: torch.Tensor, class_names: Sequence[str]
) -> torch.Tensor | None:
    """The weights ``loss.class_weights`` asks for, from the training split's ``labels``."""
    if spec is None:
        return None
    if spec == BALANCED:
        return balanced_weights(labels, class_names).float()
    k = len(class_names)
    if len(spec) != k:
        names = ", ".join(str(name) for name in class_names)
        raise ConfigError(
            f"Config error: loss.class_weights has {len(spec)} weights, but the data has {k} "
            f"classes ({names}). Fix: one weight per class, e.g. "
            f"loss.class_weights=[{','.join(['1'] * k)}], or loss.class_weights=balanced"
        )
    return torch.tensor([float(w) for w in spec], dtype=torch.float32)


def build_loss(
    cfg_loss, labels: torch.Tensor, class_names: Sequence[str], device: torch.device
) -> Loss:
    """The ``loss`` block (absent: the plain cost) for data with these training ``labels``."""
    if cfg_loss is None:
        return PLAIN
    weight = class_weights(cfg_loss.class_weights, labels, class_names)
    return Loss(None if weight is None else weight.to(device), float(cfg_loss.label_smoothing))


PLAIN = Loss()  # the reference's cost
