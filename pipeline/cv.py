"""k-fold cross-validation (``cv.folds=K``): one run of the configuration holding K nested fold
runs.

The folds are cut from the training part (the training and validation rows, ``training_part``)
by ``fold_assignment``, seeded with ``data.split_seed`` (so a seed sweep shares its folds); the
test split is left as it is. Each fold is a run nested under the configuration's run, trained on
the other folds' rows and validated on its own (standardized with its own training rows'
statistics), tagged with its fold and the assignment, its rows logged as ``cv_fold.json``.

The configuration's run then trains its model on the whole training part (the "refit"): the
model it logs, and the one ``pipeline.register`` takes. The refit has no validation split, so:

- with early stopping, it trains without it, for the epochs the folds chose: the folds' mean
  (rounded half up) of the epoch whose model each kept (``best_epoch``; ``stopped_epoch``
  without ``restore_best``), tagged ``cv.refit_epochs``. This is scikit-learn's and Keras'
  usual practice (pick the epoch count by CV, then refit on everything); the alternative, a
  held-out part of the refit's rows to stop on, would train on fewer rows than the CV scored.
- ``scheduler=plateau`` is refused by the config rules (``pipeline.config.rules``): nothing the
  refit could step it on estimates what the folds stepped theirs on.

It logs the folds' mean and standard deviation of each final metric (``cv_mean_val_cost``,
``cv_std_val_accuracy``, ...). What needs a validation split is the folds' mean: its
``objective`` (the mean validation cost) and ``val_macro_f1``, so that a sweep over
configurations (``sweep.metric``) optimizes and ranks by the CV score; its ``test_*`` and
``final_*`` metrics are the refit model's own. A resumed run skips the folds that FINISHED and
continues an interrupted one from its checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
from dataclasses import dataclass

import numpy as np
from mlflow.entities import Param, Run, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from pipeline.config.params import params
from pipeline.config.schema import SweepMetric
from pipeline.core import batched, checkpoint
from pipeline.core.data import (
    Dataset,
    fold_assignment,
    fold_dataset,
    standardization,
    training_part,
)
from pipeline.core.determinism import seed_everything
from pipeline.core.loop import stopped_line
from pipeline.core.model import Standardize
from pipeline.runtime import failpoints
from pipeline.runtime.job import JobContext
from pipeline.stage import (
    Built,
    Outcome,
    Store,
    build_data,
    build_run,
    decide,
    deployable,
    final_metrics,
    final_state_missing,
    finished_lines,
    fit_built,
    log_inputs,
    save_state,
    steering,
)
from pipeline.tags import (
    CV_ASSIGNMENT,
    CV_FOLD,
    CV_FOLDS,
    CV_SEED,
    PARENT_RUN_ID,
    RESUME_EPOCHS,
)
from pipeline.tracking.query import lookup
from pipeline.tracking.resume.policy import recorded_steps
from pipeline.tracking.run.checkpoints import Checkpoints
from pipeline.tracking.run.files import log_text
from pipeline.tracking.run.lifecycle import GroupHeartbeat, Heartbeat, liveness, tracked_run
from pipeline.tracking.run.metrics import MetricBuffer, flush_all
from pipeline.tracking.run.models import log_model
from pipeline.tracking.run.provenance import provenance_tags
from pipeline.tracking.store.redact import redact, redact_value

log = logging.getLogger(__name__)
FOLD_FILE = "cv_fold.json"  # a fold run's rows: indices into the training part
SUMMARIZED = ("final_", "val_", "test_")  # the fold metrics averaged (and ``objective``)
STOPPING = ("best_epoch", "stopped_epoch")  # averaged too, with early stopping
REFIT_EPOCHS = "cv.refit_epochs"  # tag: the epochs the refit trained (early stopping: chosen)
# Sweep metrics that need a validation split: a configuration run logs the folds' mean as each.
FOLD_MEANS = tuple(m.value for m in SweepMetric if m.value.startswith("val_"))
SHOWN = ("cv_mean_val_cost", "cv_std_val_cost", "cv_mean_val_accuracy", "cv_std_val_accuracy")


def assignment_of(cfg: DictConfig, part: Dataset) -> np.ndarray:
    """Each training row's fold, as ``cfg.cv`` and ``cfg.data.split_seed`` give it."""
    labels = part.train.labels.numpy()
    return fold_assignment(labels, cfg.cv.folds, cfg.cv.stratified, cfg.data.split_seed)


def assignment_digest(assignment: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(assignment, dtype=np.int64)).hexdigest()


def summary(folds: list[Run]) -> dict[str, float]:
    """``cv_mean_<metric>`` and ``cv_std_<metric>`` (population std, as scikit-learn's
    ``cv_results_``) of each final metric every fold run has."""
    keys = set.intersection(*(set(run.data.metrics) for run in folds))
    kept = sorted(k for k in keys if k in ("objective", *STOPPING) or k.startswith(SUMMARIZED))
    values = {key: np.array([run.data.metrics[key] for run in folds]) for key in kept}
    return {
        **{f"cv_mean_{key}": float(v.mean()) for key, v in values.items()},
        **{f"cv_std_{key}": float(v.std()) for key, v in values.items()},
    }


def refit_config(cfg: DictConfig, epochs: int | None = None) -> DictConfig:
    """``cfg`` for the model refit on the whole training part: no early stopping (there is no
    validation split to watch), for ``epochs`` (default: ``cfg.epochs``)."""
    refit = copy.deepcopy(cfg)
    refit.early_stopping.patience = None
    if epochs is not None:
        refit.epochs = epochs
    return refit


def refit_epochs(cfg: DictConfig, folds: list[Run]) -> int:
    """The last epoch the refit trains: ``epochs``; with early stopping, the folds' mean
    (rounded half up) of the epoch whose model each fold kept."""
    if cfg.early_stopping.patience is None:
        return cfg.epochs
    key = "best_epoch" if cfg.early_stopping.restore_best else "stopped_epoch"
    mean = float(np.mean([run.data.metrics[key] for run in folds]))
    return max(0, math.floor(mean + 0.5))


def configuration_metrics(refit: dict[str, float], folds: list[Run]) -> dict[str, float]:
    """The configuration run's final metrics: the refit model's, the folds' ``cv_mean_*`` and
    ``cv_std_*``, and as ``objective`` and ``val_macro_f1`` the folds' means (what needs a
    validation split, which the refit has not)."""
    scores = summary(folds)
    means = {key: scores[f"cv_mean_{key}"] for key in FOLD_MEANS if f"cv_mean_{key}" in scores}
    return refit | scores | means | {"objective": scores["cv_mean_objective"]}


def ranked_value(cfg: DictConfig, final: dict[str, float]) -> float:
    """The value a sweeper optimizes, and the sweep ranks by: ``sweep.metric`` of ``final``."""
    return final[cfg.sweep.metric.value]


def train_cv(cfg: DictConfig, job: JobContext) -> Outcome:
    """Cross-validate ``cfg`` (its folds, then its model on the whole training part) as one run."""
    data, _ = build_data(cfg)
    part = training_part(data)
    assignment = assignment_of(cfg, part)
    scaler = Standardize(*standardization(part.train)) if part.standardize else None
    built = build_run(refit_config(cfg), part, scaler)  # the model on the whole training part
    store = Store.open(cfg)
    decision = decide(cfg, job, store, built)
    if decision.done is not None:
        return decision.done
    start = decision.start
    with tracked_run(store.uri, store.experiment_id, job, start) as metrics:
        run = store.client.get_run(metrics.run_id)
        if start.resume is None:
            log_inputs(store.client, run.info.run_id, cfg, job, built)
        folds = train_folds(cfg, job, store, part, assignment, run)
        if decision.start_epoch == 0:  # the same model whether or not folds trained before it
            seed_everything(cfg.seed, cfg.threads)
        refit = refit_config(cfg, refit_epochs(cfg, folds))
        log.info("Training the model on the whole training part (%d samples)", len(part.train))
        if cfg.early_stopping.patience is not None:
            store.client.set_tag(run.info.run_id, REFIT_EPOCHS, str(refit.epochs))
            kept = "best" if cfg.early_stopping.restore_best else "stopped"
            log.info(
                "Early stopping: the refit trains epochs 0..%d without it, the folds' mean "
                "%s epoch (it has no validation split)", refit.epochs, kept,
            )  # fmt: skip
        checkpoints = Checkpoints(store.client, run)

        def save_checkpoint(epoch: int) -> None:
            metrics.flush()
            save_state(checkpoints, built, epoch)

        fit_built(refit, job, built, decision.start_epoch, metrics, save_checkpoint)
        if final_state_missing(refit, built, checkpoints):
            save_checkpoint(refit.epochs)
        own = final_metrics(built, store.client, metrics.run_id, refit.epochs)
        final = configuration_metrics(own, folds)
        metrics.log_summary(final)
        log_model(deployable(built), built.example, part.class_names, part.feature_names)
        if not cfg.checkpoint.keep:
            checkpoints.remove()
    shown = {k: v for k, v in final.items() if not k.startswith("cv_") or k in SHOWN}
    for line in finished_lines(store, start.run_name, metrics.run_id, shown):
        log.info(line)
    return Outcome(metrics.run_id, final, ranked_value(cfg, final))


@dataclass
class Fold:
    """A fold to train: what it trains, its run (new or interrupted), where its metrics and
    checkpoints go, and the epoch it starts from."""

    number: int
    built: Built
    run_id: str
    checkpoints: Checkpoints
    metrics: MetricBuffer
    start_epoch: int
    ended: bool = False  # its run terminated (FINISHED, FAILED or KILLED)

    @property
    def shape(self) -> tuple:
        """What the folds of one batch share: the start epoch, the splits' shapes, the class
        weights (``balanced``: each fold's from its own rows)."""
        data = self.built.data
        val = None if data.val is None else tuple(data.val.features.shape)
        weights = self.built.loss.weights
        return self.start_epoch, tuple(data.train.features.shape), val, weights and tuple(weights)


def train_folds(
    cfg: DictConfig,
    job: JobContext,
    store: Store,
    part: Dataset,
    assignment: np.ndarray,
    parent: Run,
) -> list[Run]:
    """Every fold's FINISHED run: those of an earlier attempt as they are, the others trained,
    as one batched group where they can (``pipeline.core.batched``), else one after another."""
    earlier = lookup.fold_runs(store.client, store.experiment_id, parent.info.run_id)
    k = cfg.cv.folds
    log.info("Cross-validation: %d folds of %d training samples", k, len(part.train))
    done: dict[int, Run] = {}
    for fold, run in sorted(earlier.items()):
        if run.info.status == RunStatus.to_string(RunStatus.FINISHED):
            log.info("Fold %d/%d FINISHED before as run %s: skipped", fold, k, run.info.run_id)
            done[fold] = run
    pending = [fold for fold in range(1, k + 1) if fold not in done]
    if not pending:
        return [done[fold] for fold in sorted(done)]
    first = build_fold(cfg, part, assignment, pending[0])
    reason = batched.why_not_batchable(first.model, first.optimizer, first.loss)
    if reason is not None or len(pending) == 1:
        if reason is not None:
            log.info("The folds train one after another: %s", reason)
        for fold in pending:
            log.info("Fold %d/%d", fold, k)
            built = build_fold(cfg, part, assignment, fold)  # seeded: as if built first
            started = start_fold(cfg, job, store, built, assignment, fold, parent, earlier)
            done[fold] = train_alone(cfg, job, store.client, started)
            failpoints.reached("fold")  # a fold FINISHED, the next not started
        return [done[fold] for fold in sorted(done)]
    folds = [
        start_fold(cfg, job, store, build_fold(cfg, part, assignment, fold), assignment, fold,
                   parent, earlier)
        for fold in pending
    ]  # fmt: skip
    try:
        for group in plan(folds, k):
            if len(group) == 1:
                log.info("Fold %d/%d", group[0].number, k)
                done[group[0].number] = train_alone(cfg, job, store.client, group[0])
                failpoints.reached("fold")
            else:
                done |= train_group(cfg, job, store.client, group)
    except BaseException as err:
        end_unfinished(store.client, folds, err)
        raise
    return [done[fold] for fold in sorted(done)]


def end_unfinished(client: MlflowClient, folds: list[Fold], err: BaseException) -> None:
    """End every fold run opened but not yet ended (a later batch's, when an earlier one
    failed or was stopped): KILLED on Ctrl-C, else FAILED, so that none is left RUNNING."""
    status = RunStatus.KILLED if isinstance(err, KeyboardInterrupt) else RunStatus.FAILED
    for fold in folds:
        if not fold.ended:
            with contextlib.suppress(Exception):  # the error that stopped them is what counts
                end_fold(client, fold, status)


def plan(folds: list[Fold], k: int) -> list[list[Fold]]:
    """The folds in batches of equal ``shape`` (the largest first), each batch's line logged:
    a fold that cannot join the largest batch says why."""
    groups: dict[tuple, list[Fold]] = {}
    for fold in folds:
        groups.setdefault(fold.shape, []).append(fold)
    ordered = sorted(groups.values(), key=len, reverse=True)
    main = ordered[0][0]
    for group in ordered:
        numbers = ", ".join(str(f.number) for f in group)
        if len(group) > 1:
            log.info("Folds %s of %d train as one batch", numbers, k)
            continue
        log.info("Fold %s of %d trains alone: %s", numbers, k, why_apart(group[0], main))
    return ordered


def why_apart(fold: Fold, other: Fold) -> str:
    """Why ``fold`` does not train in ``other``'s batch (their ``shape`` differs)."""
    (start, train, val, _), theirs = fold.shape, other.shape
    if start != theirs[0]:
        return f"it resumes from epoch {start}, fold {other.number} from epoch {theirs[0]}"
    if train != theirs[1] or val != theirs[2]:
        return (
            f"it trains on {train[0]} rows, fold {other.number} on {theirs[1][0]} (a batch's "
            "folds need the same number of rows)"
        )
    return f"its class weights (from its own rows) differ from fold {other.number}'s"


def build_fold(cfg: DictConfig, part: Dataset, assignment: np.ndarray, fold: int) -> Built:
    """What fold ``fold`` trains: its rows, standardized with their own statistics, and the
    model, optimizer and shuffler ``cfg.seed`` gives."""
    data = fold_dataset(part, assignment, fold - 1)
    scaler = Standardize(*standardization(data.train)) if data.standardize else None
    return build_run(cfg, data, scaler)


def start_fold(
    cfg: DictConfig,
    job: JobContext,
    store: Store,
    built: Built,
    assignment: np.ndarray,
    fold: int,
    parent: Run,
    earlier: dict[int, Run],
) -> Fold:
    """Fold ``fold``'s run: a new one, or its interrupted one RUNNING again (its checkpoint
    restored into ``built``)."""
    client = store.client
    run = earlier.get(fold)
    if run is None:
        run_id = open_fold(cfg, job, store, built, assignment, fold, parent)
        checkpoints, start_epoch, recorded = Checkpoints.of_new_run(client, run_id), 0, None
    else:
        run_id = run.info.run_id
        checkpoints = Checkpoints(client, run)
        start_epoch, recorded = reopen_fold(client, job, built, run, checkpoints)
        log.info(
            "Fold %d/%d resumed from epoch %d (run %s)", fold, cfg.cv.folds, start_epoch, run_id
        )
    metrics = MetricBuffer(client, run_id, cfg.tracking.flush_every_s, recorded)
    return Fold(fold, built, run_id, checkpoints, metrics, start_epoch)


def open_fold(
    cfg: DictConfig,
    job: JobContext,
    store: Store,
    built: Built,
    assignment: np.ndarray,
    fold: int,
    parent: Run,
) -> str:
    """A new fold run nested under ``parent``: tagged, its params and rows logged; its id."""
    client = store.client
    tags = {
        PARENT_RUN_ID: parent.info.run_id,
        CV_FOLD: str(fold),
        CV_FOLDS: str(cfg.cv.folds),
        CV_SEED: str(cfg.data.split_seed),
        CV_ASSIGNMENT: assignment_digest(assignment),
        **provenance_tags(built.device, built.data.digest()),
        **liveness(job),
    }
    name = f"{parent.info.run_name} fold {fold}/{cfg.cv.folds}"
    run_id = client.create_run(store.experiment_id, run_name=redact(name), tags=tags).info.run_id
    values = params(cfg, job.choices).items()
    client.log_batch(run_id, params=[Param(key, str(redact_value(v))) for key, v in values])
    rows = {
        "fold": fold,
        "folds": cfg.cv.folds,
        "stratified": cfg.cv.stratified,
        "seed": cfg.data.split_seed,
        "val_rows": np.flatnonzero(assignment == fold - 1).tolist(),
        "train_rows": np.flatnonzero(assignment != fold - 1).tolist(),
    }
    log_text(client, run_id, json.dumps(rows), FOLD_FILE)
    return run_id


def reopen_fold(
    client: MlflowClient, job: JobContext, built: Built, run: Run, checkpoints: Checkpoints
) -> tuple[int, dict[str, int]]:
    """An interrupted fold ``run`` RUNNING again, its checkpoint (if any) restored into
    ``built`` (its scheduler and early stopping too): the epoch it goes on from, and the last
    step of each metric it has."""
    saved = checkpoints.load()
    start_epoch = 0
    if saved is not None:
        start_epoch = 1 + checkpoint.restore(
            saved, built.model, built.optimizer, built.batches, built.controls
        )
    run_id = run.info.run_id
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    epochs = ",".join(filter(None, [run.data.tags.get(RESUME_EPOCHS, ""), str(start_epoch)]))
    tags = {**liveness(job), RESUME_EPOCHS: epochs}
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])
    return start_epoch, recorded_steps(client, run)


def end_fold(client: MlflowClient, fold: Fold, status: RunStatus) -> Run:
    """Fold ``fold``'s run ended with ``status``: its metrics written, its checkpoint removed
    if it FINISHED."""
    fold.metrics.flush()
    if status == RunStatus.FINISHED and fold.checkpoints.latest is not None:
        fold.checkpoints.remove()
    client.set_terminated(fold.run_id, RunStatus.to_string(status))
    fold.ended = True
    return client.get_run(fold.run_id)


def train_alone(cfg: DictConfig, job: JobContext, client: MlflowClient, fold: Fold) -> Run:
    """Train ``fold`` on its own (``pipeline.core.loop.fit``) and record it: its run."""
    heartbeat = Heartbeat(client, fold.run_id)
    status = RunStatus.FAILED

    def save_checkpoint(epoch: int) -> None:
        fold.metrics.flush()
        save_state(fold.checkpoints, fold.built, epoch)

    try:
        fit_built(cfg, job, fold.built, fold.start_epoch, fold.metrics, save_checkpoint)
        fold.metrics.log_summary(final_metrics(fold.built, client, fold.run_id, cfg.epochs))
        status = RunStatus.FINISHED
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        raise
    finally:
        heartbeat.stop()
        run = end_fold(client, fold, status)
    return run


def train_group(
    cfg: DictConfig, job: JobContext, client: MlflowClient, folds: list[Fold]
) -> dict[int, Run]:
    """Train ``folds`` (of equal ``shape``) as one batched group, each on its own rows, the
    numbers of each trained alone; record each: their runs by fold."""
    k, changed = cfg.cv.folds, steering(job.overrides)
    jobs = [
        batched.Job(fold.built.model, fold.built.optimizer, fold.built.batches,
                    epoch_lines(cfg, fold), changed, scheduler=fold.built.scheduler,
                    early=fold.built.early, data=fold.built.prepared())
        for fold in folds
    ]  # fmt: skip

    def save(epoch: int, batch: batched.Batch) -> None:
        batch.put_back()
        flush_all([fold.metrics for fold in folds])
        for fold in folds:
            save_state(fold.checkpoints, fold.built, epoch)

    heartbeat = GroupHeartbeat(client, [fold.run_id for fold in folds])
    try:
        batch = batched.fit_group(
            jobs, None, epochs=cfg.epochs, batch_size=cfg.batch_size,
            start_epoch=folds[0].start_epoch, log_every=cfg.log_every, save=save,
            save_every_s=cfg.checkpoint.every_s, loss=folds[0].built.loss,
        )  # fmt: skip
    except BaseException as err:
        heartbeat.stop()
        status = RunStatus.KILLED if isinstance(err, KeyboardInterrupt) else RunStatus.FAILED
        for fold in folds:
            end_fold(client, fold, status)
        raise
    heartbeat.stop()
    batch.put_back()
    runs, failure = {}, None
    for fold, trained in zip(folds, jobs, strict=True):
        if trained.failure is not None:
            end_fold(client, fold, RunStatus.FAILED)
            failure = failure or trained.failure
            continue
        fold.metrics.log_summary(final_metrics(fold.built, client, fold.run_id, cfg.epochs))
        runs[fold.number] = end_fold(client, fold, RunStatus.FINISHED)
        log.info("Fold %d/%d FINISHED", fold.number, k)
        failpoints.reached("fold")
    if failure is not None:
        raise failure
    return runs


def epoch_lines(cfg: DictConfig, fold: Fold) -> batched.Record:
    """A batched fold's ``record``: its epochs' metrics to its run, and the lines a fold
    trained alone logs (every ``log_every``-th epoch's cost, its early stop)."""
    k, last, early = cfg.cv.folds, cfg.epochs, fold.built.early

    def record(epochs: list[tuple[int, int, dict[str, float]]]) -> None:
        fold.metrics.log_many(epochs)
        for epoch, _, values in epochs:
            if epoch % cfg.log_every == 0 or epoch == last:
                log.info("Fold %d/%d: Epoch %4d/%d Cost: %.6f", fold.number, k, epoch, last,
                         values["cost"])  # fmt: skip
            if early is not None and epoch == early.stopped_epoch:
                log.info("Fold %d/%d: %s", fold.number, k, stopped_line(early, epoch))

    return record
