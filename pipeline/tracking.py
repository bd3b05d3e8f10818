"""MLflow: where runs are stored, how a run is opened and closed, and what it logs."""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import pandas as pd
import torch
from mlflow.entities import Experiment, Metric, Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from sqlalchemy.exc import SQLAlchemyError

from pipeline import interrupts
from pipeline.config import PipelineError, first_line
from pipeline.job import JobContext
from pipeline.redact import redact, redact_value

log = logging.getLogger(__name__)
# With tqdm installed (optuna brings it), MLflow draws a progress bar per artifact download.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
PACKAGE_DIR = Path(__file__).resolve().parent

STORE_DIR = "mlruns"
NOT_PARAMS = "tracking."  # where and how a run is tracked is not part of the experiment


def default_tracking_uri() -> str:
    """The sqlite store under ./mlruns of the directory the user runs from."""
    return f"sqlite:///{Path.cwd().resolve() / STORE_DIR / 'mlflow.db'}"


def resolve_tracking_uri(configured: str | None) -> str:
    """``tracking.uri`` if set, else $MLFLOW_TRACKING_URI, else the default sqlite store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


STORE_ERRORS = (MlflowException, SQLAlchemyError, sqlite3.Error, OSError, ValueError)


def store_error(uri: str, err: BaseException) -> PipelineError:
    """One line for a store that cannot be opened or written."""
    while getattr(err, "orig", None) or err.__cause__ or err.__context__:  # the database's words
        err = getattr(err, "orig", None) or err.__cause__ or err.__context__
    return PipelineError(
        f"Tracking store error at {redact(uri)}: {redact(first_line(err))}. "
        "Fix: check tracking.uri or MLFLOW_TRACKING_URI (and that the store is writable)"
    )


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``?mode=ro`` and ``file:`` forms too)."""
    if not uri.startswith("sqlite:///"):
        return None
    database = uri.removeprefix("sqlite:///").split("?", 1)[0].removeprefix("file:")
    return Path(database)


def prepare_store(uri: str, experiment: str) -> str:
    """Create the store and the experiment if needed (once, before any job); return its id."""
    check_reachable(uri)
    try:
        found = _get_or_create_experiment(uri, experiment)
    except STORE_ERRORS as err:
        raise store_error(uri, err) from None
    if found.lifecycle_stage != "active":
        raise PipelineError(
            f"Experiment {experiment!r} is deleted. Fix: restore it with "
            f"`mlflow experiments restore --experiment-id {found.experiment_id}` "
            "or pick another tracking.experiment"
        )
    return found.experiment_id


def _get_or_create_experiment(uri: str, name: str) -> Experiment:
    artifact_location = None
    db_path = sqlite_path(uri)
    if db_path is not None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        # Fail now, not after MLflow's connection retries (a minute and more).
        sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=rwc", uri=True).close()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
        artifact_location = (db_path.parent / "artifacts" / slug).as_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is None:
        client.create_experiment(name, artifact_location=artifact_location)
        found = client.get_experiment_by_name(name)
    return found


def check_reachable(uri: str) -> None:
    """A tracking server must answer (any HTTP status) within 5 s."""
    if not uri.startswith(("http://", "https://")):
        return
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    health = urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", "")
    )
    try:
        urllib.request.urlopen(health, timeout=5)
    except urllib.error.HTTPError:
        pass  # the server answered: it is there
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise PipelineError(
            f"Tracking server {redact(uri)} is unreachable ({reason}). "
            "Fix: start it, or point tracking.uri elsewhere"
        ) from None


def open_store(uri: str) -> MlflowClient:
    """A client for an existing store (to read runs); never creates one."""
    check_reachable(uri)
    db_path = sqlite_path(uri)
    if db_path is not None and not db_path.is_file():
        raise PipelineError(
            f"No tracking store at {redact(uri)}. Fix: run from the directory you trained in, "
            "or pass tracking.uri=... (or set MLFLOW_TRACKING_URI)"
        )
    return MlflowClient(tracking_uri=uri)


def fetch_run(client: MlflowClient, run_id: str) -> Run:
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise PipelineError(
            f"No run {run_id!r} in {redact(client.tracking_uri)}. "
            "Fix: copy the run id from the MLflow UI, or point tracking.uri at its store"
        ) from None
    if run.info.lifecycle_stage == "deleted":
        raise PipelineError(
            f"Run {run_id} is deleted. Fix: restore it with `mlflow runs restore --run-id {run_id}`"
        )
    return run


def flatten_dict(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}"""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as {dotted.key: value}, ready for ``mlflow.log_params``."""
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return {k: v for k, v in flatten_dict(container).items() if not k.startswith(NOT_PARAMS)}


def log_config(cfg: DictConfig) -> None:
    """Every resolved config value as a param, and the resolved config as ``config.yaml``."""
    mlflow.log_params({key: redact_value(value) for key, value in flatten(cfg).items()})
    mlflow.log_text(redact(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")


class MetricBuffer:
    """Collects per-step metrics and writes them with ``log_batch``, every few seconds."""

    def __init__(self, run_id: str, flush_every_s: float) -> None:
        self.client = MlflowClient()
        self.run_id = run_id
        self.flush_every_s = flush_every_s
        self.pending: list[tuple[int, int, dict[str, float]]] = []  # (step, time in ms, values)
        self.next_flush = time.monotonic() + flush_every_s

    def log(self, step: int, values: dict[str, float], timestamp_ms: int | None = None) -> None:
        """Keep ``values`` of ``step`` (measured at ``timestamp_ms``, default now) to write later.

        Called for every epoch, so it stays cheap: MLflow's Metric objects are made at flush time.
        """
        if timestamp_ms is None:
            timestamp_ms = int(time.time() * 1000)
        self.pending.append((step, timestamp_ms, values))
        if time.monotonic() >= self.next_flush:
            self.flush()

    def log_summary(self, values: dict[str, float]) -> None:
        """Metrics of the trained model (``final_cost``, ``test_accuracy``, ...), at step 0."""
        self.pending.append((0, int(time.time() * 1000), values))

    def flush(self) -> None:
        if self.pending:
            metrics = [
                Metric(key, value, timestamp, step)
                for step, timestamp, values in self.pending
                for key, value in values.items()
            ]
            self.client.log_batch(self.run_id, metrics=metrics)
            self.pending = []
        self.next_flush = time.monotonic() + self.flush_every_s


@contextmanager
def tracked_run(
    experiment_id: str, run_name: str, job: JobContext, flush_every_s: float, tags: dict[str, str]
) -> Iterator[MetricBuffer]:
    """Open a run; on exit flush metrics, log the job's files and set FINISHED/FAILED/KILLED."""
    job_tags = {"hydra.overrides": " ".join(job.overrides)}
    if job.job_num is not None:
        job_tags["hydra.job_num"] = str(job.job_num)
    if job.parent_run_id is not None:
        job_tags["mlflow.parentRunId"] = job.parent_run_id  # nests the run under its sweep
    while mlflow.active_run():  # a run an earlier job in this (reused) worker left open
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
    with interrupts.deferred():
        try:
            run = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=redact(run_name),
                tags={key: redact(str(value)) for key, value in {**job_tags, **tags}.items()},
            )
        except STORE_ERRORS as err:
            raise store_error(mlflow.get_tracking_uri(), err) from None
        metrics = MetricBuffer(run.info.run_id, flush_every_s)
        status = RunStatus.FAILED
        try:
            yield metrics
            interrupts.check()
            status = RunStatus.FINISHED
        except KeyboardInterrupt:
            status = RunStatus.KILLED
            raise
        except Exception as err:
            mlflow.set_tag("failure_reason", redact(first_line(err)))
            raise
        finally:
            try:
                metrics.flush()
                _log_job_files(job)
            finally:
                mlflow.end_run(RunStatus.to_string(status))


def _log_job_files(job: JobContext) -> None:
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


def log_model(
    model: torch.nn.Module, example: torch.Tensor, class_names: list[str], feature_names: list[str]
) -> None:
    """Log ``model/`` (the PyTorch model) and ``classifier/`` (probabilities by class name).

    Requirements are given, not inferred (inference costs seconds); the PyTorch model is
    pickled so it loads back as the ``nn.Module`` it was, with this package's code beside it.
    """
    model = model.cpu().eval()
    with torch.no_grad():
        logits = model(example)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]
    torch_model = mlflow.pytorch.log_model(
        model,
        name="model",
        signature=infer_signature(example.numpy(), logits.numpy()),
        input_example=example.numpy(),
        pip_requirements=requirements,
        serialization_format="pickle",
        code_paths=[str(PACKAGE_DIR)],
    )
    example_table = pd.DataFrame(example.double().numpy(), columns=feature_names)  # any float
    probabilities = pd.DataFrame(torch.softmax(logits, dim=1).numpy(), columns=class_names)
    with tempfile.TemporaryDirectory() as tmp:
        names = Path(tmp, "names.json")
        names.write_text(json.dumps({"classes": class_names, "features": feature_names}))
        mlflow.pyfunc.log_model(
            name="classifier",
            python_model=str(PACKAGE_DIR / "classifier.py"),
            artifacts={"torch_model": torch_model.model_uri, "names": str(names)},
            signature=infer_signature(example_table, probabilities),
            input_example=example_table,
            pip_requirements=[*requirements, f"pandas=={pd.__version__}"],
        )
