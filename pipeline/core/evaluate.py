"""Metrics of a model on a split: cost and accuracy, and the test report's per-class scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.core.data import Split
from pipeline.core.loss import PLAIN, Loss


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """The predicted class along the last dim: ``argmax``'s result, a third faster on CPU."""
    return logits.max(dim=-1).indices


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, loss: Loss = PLAIN) -> dict[str, float]:
    """Cost (``loss``) and accuracy of ``model`` on ``split`` (in eval mode)."""
    was_training = model.training
    model.eval()
    logits = model(split.features)
    model.train(was_training)
    return {
        "cost": loss(logits, split.labels).item(),
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


def macro_f1(predicted: np.ndarray, actual: np.ndarray, n_classes: int) -> float:
    """The mean of the classes' F1 scores, each class counting the same however rare (the test
    report's "macro avg" f1-score)."""
    from sklearn.metrics import f1_score

    labels = list(range(n_classes))
    return float(f1_score(actual, predicted, labels=labels, average="macro", zero_division=0))
