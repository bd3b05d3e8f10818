"""Metrics of a model on a split: cost and accuracy, and the test report's per-class scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.data import Split


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """The predicted class along the last dim: ``argmax``'s result, a third faster on CPU."""
    return logits.max(dim=-1).indices


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split) -> dict[str, float]:
    """Cost and accuracy of ``model`` on ``split`` (in eval mode)."""
    was_training = model.training
    model.eval()
    logits = model(split.features)
    model.train(was_training)
    return {
        "cost": F.cross_entropy(logits, split.labels).item(),
        "accuracy": (logits.argmax(dim=1) == split.labels).float().mean().item(),
    }


@torch.no_grad()
def predicted_and_actual(model: torch.nn.Module, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true class indices of every sample of ``split``."""
    model.eval()
    return model(split.features).argmax(dim=1).cpu().numpy(), split.labels.cpu().numpy()


def class_report(
    predicted: np.ndarray, actual: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Precision, recall and f1 per class (scikit-learn's classification report)."""
    from sklearn.metrics import classification_report

    return classification_report(
        actual,
        predicted,
        labels=list(range(len(class_names))),
        target_names=class_names,
        output_dict=True,
        zero_division=0,
    )
