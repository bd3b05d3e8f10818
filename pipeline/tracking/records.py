"""What a run records besides metrics and models: params, the config, the job's files and the
test report, every text with its secrets masked."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline.core.evaluate import class_report
from pipeline.runtime.job import JobContext, is_run_setting
from pipeline.tracking.redact import redact, redact_value


def flatten_dict(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}"""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def params(cfg: DictConfig, choices: dict[str, str]) -> dict[str, Any]:
    """The resolved config as {dotted.key: value}, less the run settings, plus the group choices
    (``optim: sgd``): what a run logs as params."""
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    values = {k: v for k, v in flatten_dict(container).items() if not is_run_setting(k)}
    return {**choices, **values}


def log_config(cfg: DictConfig, choices: dict[str, str]) -> None:
    """Every resolved config value as a param, and the resolved config as ``config.yaml``."""
    mlflow.log_params({key: redact_value(value) for key, value in params(cfg, choices).items()})
    mlflow.log_text(redact(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")


def log_job_files(job: JobContext) -> None:
    """The composed config (.hydra/) and the job's log file, secrets masked."""
    if job.output_dir is None:
        return
    files = {f"hydra/{path.name}": path for path in (job.output_dir / ".hydra").glob("*.yaml")}
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.flush()
            files[Path(handler.baseFilename).name] = Path(handler.baseFilename)
    for name, path in sorted(files.items()):
        mlflow.log_text(redact(path.read_text(errors="replace")), name)


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
