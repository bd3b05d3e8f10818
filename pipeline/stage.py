"""The training stage: one tracked run, from a validated config to a logged model.

Build the data, model and optimizer from the config's ``_target_`` entries; decide whether this
is a new run, an interrupted one to continue from its checkpoint, or (in a sweep) one already
FINISHED; train, evaluate, and record it all in MLflow. ``python -m pipeline.train`` calls
``train`` for each job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from pipeline.config.build import build
from pipeline.config.params import is_run_setting
from pipeline.config.schema import Device
from pipeline.core import checkpoint
from pipeline.core.data import Dataset, standardization
from pipeline.core.determinism import seed_everything
from pipeline.core.evaluate import evaluate, predicted_and_actual
from pipeline.core.loop import fit
from pipeline.core.model import Standardize
from pipeline.errors import PipelineError
from pipeline.runtime.console import Progress
from pipeline.runtime.job import JobContext, override_key, read_job, record_job
from pipeline.tags import DATA_DIGEST, RESUME_EPOCHS, RUN_KEY
from pipeline.tracking.resume.identity import run_key
from pipeline.tracking.resume.state import State, runs_with_key, state, why_not
from pipeline.tracking.run.checkpoints import Checkpoints
from pipeline.tracking.run.datasets import log_datasets
from pipeline.tracking.run.files import log_config, log_test_report
from pipeline.tracking.run.lifecycle import RunStart, tracked_run
from pipeline.tracking.run.models import log_model
from pipeline.tracking.run.provenance import provenance_tags
from pipeline.tracking.store.access import fetch_run, prepare_store, resolve_tracking_uri
from pipeline.tracking.store.redact import redact
from pipeline.tracking.store.serving import run_address

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


# Overrides that do not change what the optimizer does to the cost: never a divergence's cause.
NOT_STEERING = {"epochs", "log_every", "threads", "device", "seed"}


def steering(overrides: tuple[str, ...]) -> list[str]:
    """The job's overrides that change the optimization (``optim.momentum=0.99``, ``optim=adam``,
    ``batch_size=1``): less run settings, Hydra's own and those in ``NOT_STEERING``."""
    keys = [(override_key(o), o.lstrip("+~")) for o in overrides]
    return [
        setting
        for key, setting in keys
        if not (is_run_setting(key) or key in NOT_STEERING or key.split(".")[0] == "hydra")
    ]


def earlier_run(
    client: MlflowClient, experiment_id: str, cfg: DictConfig, job: JobContext, key: str
) -> Run | None:
    """The run this job continues or has already done, if any: the run ``tracking.resume``
    names; the run this job's dir records (a job requeued by its scheduler); in a sweep, a run
    of the same experiment (``run.key``) that FINISHED or was interrupted."""
    if cfg.tracking.resume:
        return fetch_run(client, cfg.tracking.resume)
    own = read_job(job.output_dir) if job.job_num is not None and job.output_dir else {}
    if own.get("run_id"):
        return fetch_run(client, own["run_id"])
    if job.job_num is None or not cfg.sweep.resume:
        return None
    same = runs_with_key(client, experiment_id, key)
    return next((r for r in same if state(r) == State.finished), None) or next(
        (r for r in same if state(r) == State.interrupted), None
    )


def check_resumable(run: Run, data_digest: str) -> None:
    """One line if ``run`` cannot be continued, or not with this data."""
    if reason := why_not(run):
        raise PipelineError(redact(reason))
    if run.data.tags.get(DATA_DIGEST) not in (None, data_digest):
        raise PipelineError(
            f"Run {run.info.run_id} was trained on other data (its data digest differs). "
            f"Fix: rerun it as a new run: python -m pipeline.rerun {run.info.run_id}"
        )


def recorded_steps(client: MlflowClient, run: Run) -> dict[str, int]:
    """The last step of each metric the run already has."""
    return {
        key: max(m.step for m in client.get_metric_history(run.info.run_id, key))
        for key in run.data.metrics
    }


def done_before(run: Run, job: JobContext, cfg: DictConfig) -> Outcome:
    """A run to resume, or a sweep job's experiment, that already FINISHED as ``run``: its
    outcome, nothing trained."""
    name = redact(run.info.run_name)
    if cfg.tracking.resume:
        log.info("Run %r (%s) is FINISHED: nothing to resume.", name, run.info.run_id)
    else:
        log.info(
            "Job %s skipped: this configuration already FINISHED as run %r (%s)",
            job.job_num, name, run.info.run_id,
        )  # fmt: skip
        record_job(job, run_id=run.info.run_id, status="FINISHED", reason="skipped: done before")
    metrics = dict(run.data.metrics)
    return Outcome(run.info.run_id, metrics, metrics[cfg.sweep.metric.name])


def train(cfg: DictConfig, job: JobContext) -> Outcome:
    """Build, train, evaluate and track one run of a validated ``cfg``."""
    device = resolve_device(cfg.device)
    data: Dataset = build("data", cfg.data)
    scaler = Standardize(*standardization(data.train)) if data.standardize else None
    seed_everything(cfg.seed, cfg.threads)
    model = build("model", cfg.model, in_features=data.n_features, out_features=data.n_classes)
    model.to(device)  # before the optimizer exists, so that a restored state lands on the device
    optimizer = build("optim", cfg.optim, params=model.parameters())
    batches = torch.Generator().manual_seed(cfg.seed)  # shuffles the mini-batches
    uri = resolve_tracking_uri(cfg.tracking.uri)
    experiment_id = prepare_store(uri, cfg.tracking.experiment)
    client = MlflowClient(uri)
    key = run_key(cfg, job.choices, data.digest())

    previous = earlier_run(client, experiment_id, cfg, job, key)
    if previous is not None and state(previous) == State.finished:
        return done_before(previous, job, cfg)
    start_epoch, tags = 0, {**provenance_tags(device, data.digest()), RUN_KEY: key}
    if previous is not None:
        check_resumable(previous, data.digest())
        saved = Checkpoints(client, previous).load()
        if saved is not None:
            start_epoch = checkpoint.restore(saved, model, optimizer, batches) + 1
        epochs_before = previous.data.tags.get(RESUME_EPOCHS, "")
        tags = {RESUME_EPOCHS: ",".join(filter(None, [epochs_before, str(start_epoch)]))}
        log.info(
            "Resuming run %r (%s) from epoch %d%s",
            redact(previous.info.run_name),
            previous.info.run_id,
            start_epoch,
            "" if saved else " (it has no checkpoint)",
        )
    start = RunStart(
        run_name=previous.info.run_name if previous else cfg.tracking.run_name or job.run_name,
        description=describe(cfg, data, job),
        tags={**tags, **cfg.tracking.tags} if previous is None else tags,
        flush_every_s=cfg.tracking.flush_every_s,
        resume=previous,
        recorded=recorded_steps(client, previous) if previous else None,
    )
    with tracked_run(uri, experiment_id, job, start) as metrics:
        run = client.get_run(metrics.run_id)
        checkpoints = Checkpoints(client, run)
        if previous is None:
            log_config(cfg, job.choices)
            log_datasets(data, cfg.data, job.choices.get("data"))
        example = data.train.features[:2].clone()  # raw rows: standardize_ works in place
        inputs = (data.standardize_(scaler) if scaler else data).to(device)

        def save_checkpoint(epoch: int) -> None:
            metrics.flush()  # the store then has every epoch the checkpoint has
            checkpoints.save(checkpoint.capture(epoch, model, optimizer, batches))

        progress = Progress(cfg.epochs)
        try:
            fit(
                model,
                optimizer,
                inputs,
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                log_every=cfg.log_every,
                generator=batches,
                record=metrics.log,
                progress=progress,
                start_epoch=start_epoch,
                save=save_checkpoint,
                save_every_s=cfg.checkpoint.every_s,
                changed=steering(job.overrides),
            )
        finally:
            progress.clear()
        if cfg.checkpoint.keep and (checkpoints.latest or {}).get("epoch") != cfg.epochs:
            save_checkpoint(cfg.epochs)  # the kept one is the final state, however short the run
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
        log_model(deployable.cpu(), example, data.class_names, data.feature_names)
        if not cfg.checkpoint.keep:
            checkpoints.remove()
    summary = ", ".join(f"{key} {value:.6g}" for key, value in final.items())
    log.info("Run %r finished: %s", redact(start.run_name), summary)
    address = run_address(uri, experiment_id, metrics.run_id)
    log.info("Run id %s; view it at %s", metrics.run_id, address)
    return Outcome(metrics.run_id, final, final[cfg.sweep.metric.name])
