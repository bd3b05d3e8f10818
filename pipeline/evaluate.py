"""Metrics of a trained model, and the test report: per-class scores and a confusion matrix."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.data import Split


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
def log_test_report(model: torch.nn.Module, test: Split, class_names: list[str]) -> None:
    """Log ``test_report.json`` (precision, recall, f1 per class) and ``confusion_matrix.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from sklearn.metrics import ConfusionMatrixDisplay, classification_report

    model.eval()
    predicted = model(test.features).argmax(dim=1).cpu().numpy()
    actual = test.labels.cpu().numpy()
    labels = list(range(len(class_names)))
    report = classification_report(
        actual,
        predicted,
        labels=labels,
        target_names=class_names,
        output_dict=True,
        zero_division=0,
    )
    mlflow.log_dict(report, "test_report.json")
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        actual, predicted, labels=labels, display_labels=class_names, ax=axes, colorbar=False
    )
    axes.set_title("Test set confusion matrix")
    mlflow.log_figure(figure, "confusion_matrix.png")
    plt.close(figure)
