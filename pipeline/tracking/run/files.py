"""What a run records besides metrics and models: params, the config, the job's files and the
test report, every text with its secrets masked."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline.config.params import params
from pipeline.core.evaluate import class_report
from pipeline.tracking.store.redact import redact, redact_value


def log_config(cfg: DictConfig, choices: dict[str, str]) -> None:
    """Every resolved config value as a param, and the resolved config as ``config.yaml``."""
    mlflow.log_params({key: redact_value(value) for key, value in params(cfg, choices).items()})
    mlflow.log_text(redact(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")


def log_job_files(output_dir: Path | None, under: str = "") -> None:
    """A job's composed config (``.hydra/*.yaml`` as ``hydra/``) and its log (``*.log``), from
    its output dir, secrets masked, under the artifact dir ``under``."""
    if output_dir is None:
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.flush()
    files = {f"hydra/{path.name}": path for path in (output_dir / ".hydra").glob("*.yaml")}
    files |= {path.name: path for path in output_dir.glob("*.log")}
    for name, path in sorted(files.items()):
        mlflow.log_text(redact(path.read_text(errors="replace")), f"{under}{name}")


def log_test_report(predicted: np.ndarray, actual: np.ndarray, class_names: list[str]) -> None:
    """Log ``test_report.json`` (precision, recall, f1 per class) and ``confusion_matrix.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    mlflow.log_dict(class_report(predicted, actual, class_names), "test_report.json")
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        actual,
        predicted,
        labels=list(range(len(class_names))),
        display_labels=class_names,
        ax=axes,
        colorbar=False,
    )
    axes.set_title("Test set confusion matrix")
    mlflow.log_figure(figure, "confusion_matrix.png")
    plt.close(figure)
