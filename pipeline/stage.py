"""The training stage: one tracked run, from a validated config to a logged model, in four
phases that a sweep's batched group (``pipeline.group``) goes through too:

- **build** the data, model and optimizer from the config's ``_target_`` entries;
- **decide** whether this is a new run, an interrupted one to continue from its checkpoint, or
  (in a sweep) one already FINISHED;
- **fit** (``pipeline.core.loop.fit``; a group: ``pipeline.core.batched.fit_group``);
- **record** the final metrics, the test report and the model in MLflow.

``python -m pipeline.train`` calls ``train`` for a run alone or a job of another launcher.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from pipeline.config.build import build
from pipeline.config.params import is_run_setting
from pipeline.config.schema import Device
from pipeline.core import checkpoint
from pipeline.core.controls import EarlyStopping, Scheduler, build_scheduler
from pipeline.core.data import Dataset, standardization
from pipeline.core.determinism import seed_everything
from pipeline.core.evaluate import evaluate, macro_f1, predicted_and_actual
from pipeline.core.loop import fit
from pipeline.core.loss import PLAIN, Loss, build_loss
from pipeline.core.model import Standardize
from pipeline.runtime.console import Progress
from pipeline.runtime.job import JobContext, override_key, record_job
from pipeline.tags import RESUME_EPOCHS, RUN_KEY
from pipeline.tracking.resume.identity import run_key
from pipeline.tracking.resume.policy import check_resumable, earlier_run, recorded_steps
from pipeline.tracking.resume.state import State, state
from pipeline.tracking.run.checkpoints import Checkpoints
from pipeline.tracking.run.datasets import log_datasets
from pipeline.tracking.run.files import log_config, log_test_report, log_text
from pipeline.tracking.run.lifecycle import RunStart, tracked_run
from pipeline.tracking.run.metrics import MetricBuffer
from pipeline.tracking.run.models import log_model
from pipeline.tracking.run.provenance import provenance_tags
from pipeline.tracking.store.access import prepare_store, resolve_tracking_uri
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


# Overrides (keys, or their first part) that do not change what the optimizer does to the cost:
# never a divergence's cause.
NOT_STEERING = {"epochs", "log_every", "threads", "device", "seed", "hydra", "early_stopping", "cv"}


def steering(overrides: tuple[str, ...]) -> list[str]:
    """The job's overrides that change the optimization (``optim.momentum=0.99``, ``optim=adam``,
    ``batch_size=1``): less run settings, Hydra's own and those in ``NOT_STEERING``."""
    keys = [(override_key(o), o.lstrip("+~")) for o in overrides]
    return [
        setting
        for key, setting in keys
        if not (is_run_setting(key) or key.split(".")[0] in NOT_STEERING)
    ]


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


@dataclass
class Built:
    """What a run trains: its data (raw: ``inputs`` is what the model sees), the model,
    optimizer and mini-batch shuffler its seed gives, the device and the standardization, and
    its learning-rate scheduler and early stopping (None: off)."""

    data: Dataset
    scaler: Standardize | None
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batches: torch.Generator
    device: torch.device
    example: torch.Tensor  # two raw training rows: the logged model's input example
    inputs: Dataset | None = None  # the data standardized and on the device, once ``prepared``
    scheduler: Scheduler | None = None
    early: EarlyStopping | None = None
    loss: Loss = PLAIN  # the cost minimized (class weights from the training split)

    @property
    def controls(self) -> dict:
        """What a checkpoint keeps besides the model, optimizer and generators."""
        return {"scheduler": self.scheduler, "early_stopping": self.early}

    def last_epoch(self, epochs: int) -> int:
        """The last epoch trained: ``epochs``, or the one early stopping stopped at."""
        return self.early.stopped_epoch if self.early and self.early.stopped else epochs

    def prepared(self) -> Dataset:
        """The data as the model sees it (standardized in place: the raw data is then gone)."""
        if self.inputs is None:
            scaled = self.data.standardize_(self.scaler) if self.scaler else self.data
            self.inputs = scaled.to(self.device)
        return self.inputs


def build_data(cfg: DictConfig) -> tuple[Dataset, Standardize | None]:
    data: Dataset = build("data", cfg.data)
    return data, Standardize(*standardization(data.train)) if data.standardize else None


def build_run(cfg: DictConfig, data: Dataset, scaler: Standardize | None) -> Built:
    """Build: the model and optimizer ``cfg.seed`` gives, on ``data``, and its loss (a bad
    ``loss.class_weights`` for this data: a ConfigError, before any run)."""
    device = resolve_device(cfg.device)
    loss = build_loss(cfg.get("loss"), data.train.labels, data.class_names, device)
    seed_everything(cfg.seed, cfg.threads)
    model = build("model", cfg.model, in_features=data.n_features, out_features=data.n_classes)
    model.to(device)  # before the optimizer exists, so that a restored state lands on the device
    optimizer = build("optim", cfg.optim, params=model.parameters())
    batches = torch.Generator().manual_seed(cfg.seed)  # shuffles the mini-batches
    example = data.train.features[:2].clone()  # raw rows: standardize_ works in place
    scheduler = build_scheduler(cfg.scheduler, optimizer)
    early = EarlyStopping.of(cfg.early_stopping)
    return Built(
        data, scaler, model, optimizer, batches, device, example, None, scheduler, early, loss
    )


@dataclass(frozen=True)
class Store:
    """Where the runs go: the URI, the experiment and a client."""

    uri: str
    experiment_id: str
    client: MlflowClient

    @classmethod
    def open(cls, cfg: DictConfig) -> Store:
        uri = resolve_tracking_uri(cfg.tracking.uri)
        return cls(uri, prepare_store(uri, cfg.tracking.experiment), MlflowClient(uri))


@dataclass(frozen=True)
class Decision:
    """Decide: a new run (``previous`` None), ``previous`` resumed from ``start_epoch``, or
    nothing to train (``done``: the outcome of a run that FINISHED)."""

    start: RunStart | None
    start_epoch: int = 0
    done: Outcome | None = None


def decide(
    cfg: DictConfig,
    job: JobContext,
    store: Store,
    built: Built,
    known: dict[str, list[Run]] | None = None,
) -> Decision:
    """Decide what this job does, and restore a resumed run's checkpoint into ``built``
    (``known``: the experiment's runs by ``run.key``, for a batched group's jobs)."""
    digest = built.data.digest()
    key = run_key(cfg, job.choices, digest)
    previous = earlier_run(store.client, store.experiment_id, cfg, job, key, known)
    if previous is not None and state(previous) == State.finished:
        return Decision(None, done=done_before(previous, job, cfg))
    start_epoch, tags = 0, {**provenance_tags(built.device, digest), RUN_KEY: key}
    if previous is not None:
        check_resumable(previous, digest)
        saved = Checkpoints(store.client, previous).load()
        if saved is not None:
            start_epoch = 1 + checkpoint.restore(
                saved, built.model, built.optimizer, built.batches, built.controls
            )
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
        description=describe(cfg, built.data, job),
        tags={**tags, **cfg.tracking.tags} if previous is None else tags,
        flush_every_s=cfg.tracking.flush_every_s,
        resume=previous,
        recorded=recorded_steps(store.client, previous) if previous else None,
    )
    return Decision(start, start_epoch)


def record(cfg: DictConfig, built: Built, metrics: MetricBuffer, checkpoints: Checkpoints,
           save_checkpoint: Callable[[int], None]) -> dict[str, float]:  # fmt: skip
    """Record the trained model of the active run: final metrics, test report, the model;
    its checkpoint kept or removed. Returns the final metrics."""
    if final_state_missing(cfg, built, checkpoints):
        save_checkpoint(built.last_epoch(cfg.epochs))
    final = final_metrics(built, metrics.client, metrics.run_id, cfg.epochs)
    metrics.log_summary(final)
    data = built.data
    log_model(deployable(built), built.example, data.class_names, data.feature_names)
    if not cfg.checkpoint.keep:
        checkpoints.remove()
    return final


def final_state_missing(cfg: DictConfig, built: Built, checkpoints: Checkpoints) -> bool:
    """Whether a run that keeps its checkpoint lacks one of its final state (however short the
    run: it may have ended before its first)."""
    last = built.last_epoch(cfg.epochs)
    return cfg.checkpoint.keep and (checkpoints.latest or {}).get("epoch") != last


def save_state(checkpoints: Checkpoints, built: Built, epoch: int) -> None:
    """Checkpoint ``built`` as it is after ``epoch``."""
    state = checkpoint.capture(epoch, built.model, built.optimizer, built.batches, built.controls)
    checkpoints.save(state)


def final_metrics(built: Built, client: MlflowClient, run_id: str, epochs: int) -> dict[str, float]:
    """The trained model's final training metrics, test metrics and report (with a test split),
    the macro-F1 of the validation and test splits, and the ``objective`` a sweeper minimizes:
    the validation cost, else the training cost. With early stopping, the best epoch's model
    (``restore_best``), and ``best_epoch`` and ``stopped_epoch``."""
    model, inputs, loss = built.model, built.prepared(), built.loss
    if built.early is not None:
        built.early.restore(model)
    k = built.data.n_classes
    final = {f"final_{key}": value for key, value in evaluate(model, inputs.train, loss).items()}
    if inputs.test is not None:
        final |= {f"test_{key}": v for key, v in evaluate(model, inputs.test, loss).items()}
        report = predicted_and_actual(model, inputs.test)
        final["test_macro_f1"] = macro_f1(*report, k)
        log_test_report(client, run_id, *report, built.data.class_names)
    if inputs.val is not None:
        final["val_macro_f1"] = macro_f1(*predicted_and_actual(model, inputs.val), k)
    final["objective"] = (
        evaluate(model, inputs.val, loss)["cost"] if inputs.val is not None else final["final_cost"]
    )
    if built.early is not None:
        final |= built.early.summary(built.last_epoch(epochs))
    return final


def deployable(built: Built) -> torch.nn.Module:
    """The model to log: standardization (if any) then the trained model, on the CPU."""
    model = torch.nn.Sequential(built.scaler, built.model) if built.scaler else built.model
    return model.cpu()


def log_inputs(
    client: MlflowClient, run_id: str, cfg: DictConfig, job: JobContext, built: Built
) -> None:
    """What a new run records first: its config (params and ``config.yaml``), its datasets
    and the class weights its loss uses."""
    log_config(client, run_id, cfg, job.choices)
    log_datasets(client, run_id, built.data, cfg.data, job.choices.get("data"))
    for key, value in class_weight_params(built).items():
        client.log_param(run_id, key, value)
    log_class_weights(client, run_id, built)


CLASS_WEIGHTS = "loss.weights"  # the param of the class weights used, in class order


CLASS_WEIGHTS_FILE = "class_weights.json"  # {class: weight}, the weights in full


def class_weight_params(built: Built) -> dict[str, str]:
    """The param ``loss.weights`` of a run whose loss weights its classes (else none)."""
    weights = built.loss.weights
    if weights is None:
        return {}
    return {CLASS_WEIGHTS: json.dumps([float(f"{w:.8g}") for w in weights])}


def log_class_weights(client: MlflowClient, run_id: str, built: Built,
                      artifact_uri: str | None = None) -> None:  # fmt: skip
    """The class weights the loss uses (``balanced``: computed from the training split), as
    ``class_weights.json`` (the param ``loss.weights``: ``class_weight_params``)."""
    weights = built.loss.weights
    if weights is None:
        return
    by_class = dict(zip(built.data.class_names, weights, strict=True))
    log_text(client, run_id, json.dumps(by_class, indent=2), CLASS_WEIGHTS_FILE, artifact_uri)


def watch_system(cfg: DictConfig, client: MlflowClient, run_ids: list[str],
                 resumed: bool) -> Callable[[], None]:  # fmt: skip
    """Start logging the system metrics of ``run_ids`` if ``tracking.system_metrics``; returns
    what stops it (and logs the last samples)."""
    if not cfg.tracking.get("system_metrics"):
        return lambda: None
    from pipeline.tracking.run.system import monitor  # imports psutil: only when asked for

    return monitor(client, run_ids, cfg.tracking.system_metrics_every_s, resumed).finish


def finished_lines(store: Store, run_name: str, run_id: str, final: dict[str, float]) -> list[str]:
    """What a run logs once it is FINISHED: its final metrics, then its id and address."""
    summary = ", ".join(f"{key} {value:.6g}" for key, value in final.items())
    address = run_address(store.uri, store.experiment_id, run_id)
    return [
        f"Run {redact(run_name)!r} finished: {summary}",
        f"Run id {run_id}; view it at {address}",
    ]


def finished(cfg: DictConfig, store: Store, run_name: str, run_id: str,
             final: dict[str, float]) -> Outcome:  # fmt: skip
    for line in finished_lines(store, run_name, run_id, final):
        log.info(line)
    return Outcome(run_id, final, final[cfg.sweep.metric.name])


def fit_built(
    cfg: DictConfig,
    job: JobContext,
    built: Built,
    start_epoch: int,
    metrics: MetricBuffer,
    save: Callable[[int], None],
) -> None:
    """``fit`` what ``build_run`` built, from ``start_epoch``: each epoch's metrics into
    ``metrics``, checkpoints through ``save``, a progress line on a terminal."""
    progress = Progress(cfg.epochs)
    try:
        fit(
            built.model,
            built.optimizer,
            built.prepared(),
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            log_every=cfg.log_every,
            generator=built.batches,
            record=metrics.log,
            progress=progress,
            start_epoch=start_epoch,
            save=save,
            save_every_s=cfg.checkpoint.every_s,
            changed=steering(job.overrides),
            scheduler=built.scheduler,
            early=built.early,
            loss=built.loss,
        )
    finally:
        progress.clear()


def train(cfg: DictConfig, job: JobContext) -> Outcome:
    """Build, decide, fit and record one run of a validated ``cfg`` (with ``cv.folds``: its
    cross-validation, ``pipeline.cv``)."""
    if cfg.cv.folds is not None:
        from pipeline.cv import train_cv

        return train_cv(cfg, job)
    built = build_run(cfg, *build_data(cfg))
    store = Store.open(cfg)
    decision = decide(cfg, job, store, built)
    if decision.done is not None:
        return decision.done
    start = decision.start
    with tracked_run(store.uri, store.experiment_id, job, start) as metrics:
        run = store.client.get_run(metrics.run_id)
        checkpoints = Checkpoints(store.client, run)
        if start.resume is None:
            log_inputs(store.client, run.info.run_id, cfg, job, built)

        def save_checkpoint(epoch: int) -> None:
            metrics.flush()  # the store then has every epoch the checkpoint has
            save_state(checkpoints, built, epoch)

        unwatch = watch_system(cfg, store.client, [run.info.run_id], start.resume is not None)
        try:
            fit_built(cfg, job, built, decision.start_epoch, metrics, save_checkpoint)
        finally:
            unwatch()
        final = record(cfg, built, metrics, checkpoints, save_checkpoint)
    return finished(cfg, store, start.run_name, metrics.run_id, final)
