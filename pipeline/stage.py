"""The training stage: one tracked run, from a validated config to a logged model.

Build the data, model and optimizer from the config's ``_target_`` entries, train, evaluate,
and record it all in MLflow. ``python -m pipeline.train`` calls ``train`` for each job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from pipeline.config.build import build
from pipeline.config.schema import Device
from pipeline.core.data import Dataset, standardization
from pipeline.core.determinism import seed_everything
from pipeline.core.evaluate import evaluate, predicted_and_actual
from pipeline.core.loop import fit
from pipeline.core.model import Standardize
from pipeline.runtime.console import Progress
from pipeline.runtime.job import JobContext
from pipeline.tracking.addresses import run_address
from pipeline.tracking.datasets import log_datasets
from pipeline.tracking.models import log_model
from pipeline.tracking.provenance import provenance_tags
from pipeline.tracking.records import log_config, log_test_report
from pipeline.tracking.redact import redact
from pipeline.tracking.runs import tracked_run
from pipeline.tracking.store import prepare_store, resolve_tracking_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """A finished run: its id and final metrics, and the value a sweeper optimizes."""

    run_id: str
    metrics: dict[str, float]
    value: float


def describe(cfg: DictConfig, data: Dataset, job: JobContext) -> str:
    """The run's description in the MLflow UI."""
    sizes = "/".join(str(len(s)) for s in (data.train, data.val, data.test) if s is not None)
    model, optim = (job.choices.get(g) or cfg[g]._target_ for g in ("model", "optim"))
    data_name = job.choices.get("data") or cfg.data._target_
    return (
        f"{model} on {data_name} ({sizes} train/val/test samples, "
        f"{data.n_features} features, {data.n_classes} classes); {optim} "
        f"lr={cfg.optim.lr}, batch_size={cfg.batch_size}, {cfg.epochs} epochs, seed {cfg.seed}"
    )


def resolve_device(device: Device) -> torch.device:
    if device == Device.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device.value)


def train(cfg: DictConfig, job: JobContext) -> Outcome:
    """Build, train, evaluate and track one run of a validated ``cfg``."""
    device = resolve_device(cfg.device)
    data: Dataset = build("data", cfg.data)
    scaler = Standardize(*standardization(data.train)) if data.standardize else None
    seed_everything(cfg.seed, cfg.threads)
    model = build("model", cfg.model, in_features=data.n_features, out_features=data.n_classes)
    optimizer = build("optim", cfg.optim, params=model.parameters())
    uri = resolve_tracking_uri(cfg.tracking.uri)
    experiment_id = prepare_store(uri, cfg.tracking.experiment)

    run_name = cfg.tracking.run_name or job.run_name
    tags = {**provenance_tags(device, data.digest()), **cfg.tracking.tags}
    with tracked_run(
        uri,
        experiment_id,
        job,
        run_name=run_name,
        description=describe(cfg, data, job),
        tags=tags,
        flush_every_s=cfg.tracking.flush_every_s,
    ) as metrics:
        log_config(cfg, job.choices)
        log_datasets(data, cfg.data, job.choices.get("data"))
        model.to(device)
        inputs = (data.standardized(scaler) if scaler else data).to(device)
        progress = Progress(cfg.epochs)
        try:
            fit(
                model,
                optimizer,
                inputs,
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                log_every=cfg.log_every,
                generator=torch.Generator().manual_seed(cfg.seed),
                record=metrics.log,
                progress=progress,
            )
        finally:
            progress.clear()
        final = {f"final_{key}": value for key, value in evaluate(model, inputs.train).items()}
        if inputs.test is not None:
            final |= {f"test_{key}": value for key, value in evaluate(model, inputs.test).items()}
            log_test_report(*predicted_and_actual(model, inputs.test), data.class_names)
        # What a sweeper minimizes by default: the validation cost, else the training cost.
        final["objective"] = (
            evaluate(model, inputs.val)["cost"] if inputs.val is not None else final["final_cost"]
        )
        metrics.log_summary(final)
        deployable = torch.nn.Sequential(scaler, model) if scaler else model
        log_model(deployable.cpu(), data.train.features[:2], data.class_names, data.feature_names)
    summary = ", ".join(f"{key} {value:.6g}" for key, value in final.items())
    log.info("Run %r finished: %s", redact(run_name), summary)
    address = run_address(uri, experiment_id, metrics.run_id)
    log.info("Run id %s; view it at %s", metrics.run_id, address)
    return Outcome(metrics.run_id, final, final[cfg.sweep.metric.name])
