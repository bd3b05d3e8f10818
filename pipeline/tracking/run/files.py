"""The files a run keeps besides its model, datasets and checkpoints, every text with its
secrets masked: its resolved config (``config.yaml``, its values also as params), the job's
Hydra files and log, and the test report. And the config read back from a past run."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import yaml
from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path
from omegaconf import DictConfig, OmegaConf

from pipeline.config.params import params
from pipeline.core.evaluate import class_report
from pipeline.errors import PipelineError
from pipeline.tracking.store.redact import redact, redact_value

CONFIG_FILE = "config.yaml"


def log_config(client: MlflowClient, run_id: str, cfg: DictConfig, choices: dict[str, str]) -> None:
    """Every resolved config value as a param, and the resolved config as ``config.yaml``."""
    values = params(cfg, choices).items()
    client.log_batch(run_id, params=[Param(key, str(redact_value(v))) for key, v in values])
    log_config_file(client, run_id, cfg)


def log_config_file(
    client: MlflowClient,
    run_id: str,
    cfg: DictConfig,
    artifact_uri: str | None = None,
    unresolved: str | None = None,
) -> None:
    """The resolved config as ``config.yaml`` (secrets masked). ``unresolved``: the config's
    ``OmegaConf.to_yaml`` where the caller has it (a job's ``.hydra/config.yaml``): a config
    without interpolations (no ``${`` in it) resolves to that same text, not dumped again."""
    if unresolved is not None and "${" not in unresolved:
        text = unresolved
    else:
        text = OmegaConf.to_yaml(cfg, resolve=True)
    log_text(client, run_id, redact(text), CONFIG_FILE, artifact_uri)


def log_text(
    client: MlflowClient, run_id: str, text: str, path: str, artifact_uri: str | None = None
) -> None:
    """``client.log_text``; straight into the run's artifact dir where ``artifact_uri`` (the
    run's) is on local disk: a batched group writes a thousand runs' files, and the client's
    way (a temp dir, then a copy) costs ~5 ms a file."""
    if artifact_uri is None or urlparse(artifact_uri).scheme not in ("", "file"):
        client.log_text(run_id, text, path)
        return
    target = Path(local_file_uri_to_path(artifact_uri)) / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def find_recorded_config(client: MlflowClient, run_id: str) -> dict[str, Any] | None:
    """The resolved config the run logged as ``config.yaml``; None if it logged none."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, CONFIG_FILE, tmp)
        except (MlflowException, OSError):
            return None
        return yaml.safe_load(Path(path).read_text())


def recorded_config(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """``find_recorded_config``, for a run that must have one: one line with a fix if not."""
    config = find_recorded_config(client, run_id)
    if config is None:
        raise PipelineError(
            f"Run {run_id} has no recorded {CONFIG_FILE}: it was not made by "
            "`python -m pipeline.train`. Fix: use a run that was"
        )
    return config


def log_job_files(
    client: MlflowClient,
    run_id: str,
    output_dir: Path | None,
    under: str = "",
    artifact_uri: str | None = None,
) -> None:
    """A job's composed config (``.hydra/*.yaml`` as ``hydra/``) and its log (``*.log``), from
    its output dir, secrets masked, under the artifact dir ``under`` of run ``run_id``."""
    if output_dir is None:
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.flush()
    files = {f"hydra/{path.name}": path for path in (output_dir / ".hydra").glob("*.yaml")}
    files |= {path.name: path for path in output_dir.glob("*.log")}
    for name, path in sorted(files.items()):
        text = redact(path.read_text(errors="replace"))
        log_text(client, run_id, text, f"{under}{name}", artifact_uri)


def log_test_report(
    client: MlflowClient,
    run_id: str,
    predicted: np.ndarray,
    actual: np.ndarray,
    class_names: list[str],
) -> None:
    """Log ``test_report.json`` (precision, recall, f1 per class) and ``confusion_matrix.png``."""
    from matplotlib.figure import Figure  # not pyplot: a notebook's backend stays as it is
    from sklearn.metrics import ConfusionMatrixDisplay

    client.log_dict(run_id, class_report(predicted, actual, class_names), "test_report.json")
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure = Figure(figsize=(size, size))
    axes = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(
        actual,
        predicted,
        labels=list(range(len(class_names))),
        display_labels=class_names,
        ax=axes,
        colorbar=False,
    )
    axes.set_title("Test set confusion matrix")
    client.log_figure(run_id, figure, "confusion_matrix.png")
