"""A sweep's jobs trained in groups: each group one batched computation, each job a whole run.

The vectorized launcher (``conf/hydra/launcher/vectorized.yaml``) hands every composed job to
``launch``. Jobs that share data, model, optimizer class, epochs, batch size, device, threads,
loss and store form a group; each group goes through ``pipeline.stage``'s phases: **build**
(the data once, each job's model and optimizer from its seed), **decide** (new, resumed or
done, per job), **fit** (``pipeline.core.batched.fit_group``) and **record** (each job's run,
as a run alone records it). A job that cannot batch (L-BFGS, dropout, label smoothing, a group
of one) trains alone, through Hydra's ``run_job``, as the basic launcher would.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus, run_job
from mlflow.entities import RunStatus, RunTag
from mlflow.utils.uri import append_to_uri_path
from omegaconf import DictConfig, OmegaConf

from pipeline.config import validate
from pipeline.config.copies import task_part
from pipeline.config.params import params
from pipeline.core import batched
from pipeline.core.compiler import optimizers_without_compiler
from pipeline.core.loop import stopped_line
from pipeline.errors import PipelineError, first_line
from pipeline.runtime import interrupts
from pipeline.runtime.console import SweepProgress
from pipeline.runtime.job import JobContext, record_job
from pipeline.stage import (
    Built,
    Decision,
    Outcome,
    Store,
    build_data,
    build_run,
    class_weight_params,
    decide,
    deployable,
    final_metrics,
    final_state_missing,
    finished_lines,
    log_class_weights,
    save_state,
    steering,
    watch_system,
)
from pipeline.tags import BATCH_JOBS, FAILURE_REASON, FAILURE_RESUMABLE
from pipeline.tracking.resume.state import runs_by_key
from pipeline.tracking.run.checkpoints import Checkpoints
from pipeline.tracking.run.datasets import dataset_inputs
from pipeline.tracking.run.files import log_config_file, log_job_files
from pipeline.tracking.run.lifecycle import GroupHeartbeat, Opening, attempt_dir, open_runs
from pipeline.tracking.run.metrics import MetricBuffer, flush_all
from pipeline.tracking.run.models import experiment_location, template_for, writes_directly
from pipeline.tracking.store.bulk import terminate_runs, write_logged_models
from pipeline.tracking.store.redact import redact, redact_value

log = logging.getLogger(__name__)
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # hydra/job_logging's file
# What jobs of one group must share (less the seed and the optimizer's numbers).
SHARED = ("data", "model", "epochs", "batch_size", "device", "threads", "log_every", "tracking",
          "checkpoint", "sweep", "loss", "cv")  # fmt: skip


@dataclass
class Member:
    """One job of a group, from its composed config to its run."""

    config: DictConfig  # with its hydra node
    cfg: DictConfig  # the task's config (no hydra node)
    job: JobContext
    built: Built | None = None
    decision: Decision | None = None
    run_id: str = ""
    metrics: MetricBuffer | None = None
    checkpoints: Checkpoints | None = None
    lines: list[tuple[int, str]] = field(default_factory=list)  # (time in ms, epoch line)
    outcome: Outcome | BaseException | None = None
    trained: batched.Job | None = None  # its part of the batch
    artifact_uri: str | None = None
    params: dict[str, str] | None = None  # its run's params (``params_of``)

    @property
    def failure(self) -> BaseException | None:
        return self.trained.failure if self.trained else None

    def log_epochs(self, epochs: list[tuple[int, int, dict[str, float]]]) -> None:
        """Keep the epochs' metrics to write, and the lines a run alone would log."""
        self.metrics.log_many(epochs)
        every, last = self.cfg.log_every, self.cfg.epochs
        early = self.built.early
        for epoch, ms, values in epochs:
            if epoch % every == 0 or epoch == last:
                self.lines.append((ms, f"Epoch {epoch:4d}/{last} Cost: {values['cost']:.6f}"))
            if early is not None and epoch == early.stopped_epoch:
                self.lines.append((ms, stopped_line(early, epoch)))


def group_key(cfg: DictConfig) -> str:
    """What the jobs of one group share, as text (a job's ``cfg``, with its hydra node or not)."""
    shared = {key: OmegaConf.select(cfg, key) for key in (*SHARED, "optim._target_")}
    return json.dumps(
        {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
         for k, v in shared.items()}, sort_keys=True, default=str,
    )  # fmt: skip


def launch(
    configs: Sequence[DictConfig],
    alone: Callable[[DictConfig], JobReturn],
    group_size: int,
    tasks: Sequence[DictConfig] | None = None,
) -> list[JobReturn]:
    """Train the composed ``configs``, in groups where they batch; ``alone(config)`` trains one
    job as the basic launcher does. One ``JobReturn`` per config, in order. ``tasks``: each
    config's task part (``task_part``), where the caller has it already."""
    optimizers_without_compiler()  # a group updates its jobs functionally: 1-2 s not spent
    with long_lived_heap():
        return launch_groups(configs, alone, group_size, tasks)


_long_lived = 0  # how many ``long_lived_heap`` blocks the process is in


@contextmanager
def long_lived_heap() -> Iterator[None]:
    """Python's cyclic collector kept off what a sweep keeps until its end. Nearly all that a
    sweep makes lives until its jobs are recorded (their configs, models, runs, every epoch's
    metrics), and each full collection scans all of it: 12 of them took 8 s of a 1000-job sweep.
    So what is alive is collected once and frozen (``gc.freeze``: not scanned again), and again
    at each ``keep()``, until ``release_heap()``: when the sweep's summary is done
    (``SweepTracking.close``), or when the next sweep starts. Memory freed by reference counting
    is freed as before; cycles frozen wait for the release."""
    global _long_lived
    if _long_lived == 0:
        gc.unfreeze()  # what an earlier sweep left
        gc.collect()
        gc.freeze()
    _long_lived += 1
    try:
        yield
    finally:
        _long_lived -= 1


def keep() -> None:
    """In a ``long_lived_heap`` block: what is alive now stays (frozen)."""
    if _long_lived:
        gc.freeze()


def release_heap() -> None:
    """Unfreeze what sweeps froze (outside a ``long_lived_heap`` block): the next full
    collection frees what they left."""
    if _long_lived == 0:
        gc.unfreeze()


def launch_groups(
    configs: Sequence[DictConfig],
    alone: Callable[[DictConfig], JobReturn],
    group_size: int,
    tasks: Sequence[DictConfig] | None = None,
) -> list[JobReturn]:
    tasks = tasks if tasks is not None else [task_part(c) for c in configs]
    members = [Member(c, t, JobContext.of(c.hydra)) for c, t in zip(configs, tasks, strict=True)]
    valid = [m for m in members if valid_config(m)]
    groups: dict[str, list[Member]] = {}
    for member in valid:
        groups.setdefault(group_key(member.cfg), []).append(member)
    returns: dict[int, JobReturn] = {}
    progress = SweepProgress(len(valid))
    try:
        for group in groups.values():
            for start in range(0, len(group), group_size):
                chunk = group[start : start + group_size]
                for member, ret in train_chunk(chunk, alone, progress):
                    returns[id(member)] = ret
    finally:
        progress.close()
    for member in members:
        if id(member) not in returns:
            returns[id(member)] = job_return(member)
    return [returns[id(m)] for m in members]


def valid_config(member: Member) -> bool:
    """Validate before any run: a job with an invalid value fails alone."""
    try:
        validate(member.cfg)
        return True
    except PipelineError as err:
        fail(member, err)
        return False


def fail(member: Member, err: BaseException) -> None:
    log.error("Job %d failed: %s", member.job.job_num, first_line(err))
    record_job(member.job, status="FAILED", reason=first_line(err))
    member.outcome = err


def job_return(member: Member) -> JobReturn:
    """What Hydra's ``run_job`` would return for the job."""
    ret = JobReturn()
    ret.cfg, ret.hydra_cfg = member.cfg, member.config  # (its hydra node: as run_job gives)
    ret.overrides = list(member.job.overrides)
    ret.working_dir = str(Path.cwd())
    ret.task_name = str(member.config.hydra.job.name)
    if isinstance(member.outcome, Outcome):
        ret.status, ret.return_value = JobStatus.COMPLETED, member.outcome.value
    else:  # a failed job returns NaN, as a job of the basic launcher does
        ret.status, ret.return_value = JobStatus.COMPLETED, float("nan")
    return ret


def train_chunk(chunk: list[Member], alone: Callable[[DictConfig], JobReturn],
                progress: SweepProgress):  # fmt: skip
    """Yield (member, JobReturn) for each job of ``chunk``: batched, or one at a time."""
    data, scaler = build_data(chunk[0].cfg)
    first = build_run(chunk[0].cfg, data, scaler)
    reason = batched.why_not_batchable(first.model, first.optimizer, first.loss)
    if chunk[0].cfg.cv.folds is not None:  # pipeline.cv trains a configuration's folds
        reason = "cross-validation (cv.folds): each job batches its own folds"
    if reason is None and len(chunk) == 1:
        reason = "a group of one"
    if reason is not None:
        nums = ", ".join(str(m.job.job_num) for m in chunk)
        if len(chunk) == 1:
            log.info("Job %s trains alone: %s", nums, reason)
        else:
            log.info("Jobs %s train one at a time: %s", nums, reason)
        for member in chunk:
            ret = alone(member.config)
            value = ret.return_value  # the job's objective; NaN (or an error) if it failed
            failed = not (isinstance(value, float) and not math.isnan(value))
            progress.recorded(0 if failed else 1, 1 if failed else 0)
            yield member, ret
        return
    store = Store.open(chunk[0].cfg)
    pending: dict[int, list[Member]] = {}
    known = runs_by_key(store.client, store.experiment_id) if chunk[0].cfg.sweep.resume else {}
    for member in chunk:
        try:
            member.built = build_run(member.cfg, data, scaler)
            member.decision = decide(member.cfg, member.job, store, member.built, known)
        except PipelineError as err:
            fail(member, err)
            continue
        if member.decision.done is not None:
            member.outcome = member.decision.done
        else:
            pending.setdefault(member.decision.start_epoch, []).append(member)
    for start_epoch, members in pending.items():
        with interrupts.deferred():  # a signal stops the batch at an epoch boundary
            train_batch(members, store, start_epoch, progress)
    for member in chunk:
        yield member, job_return(member)


def train_batch(
    members: list[Member], store: Store, start_epoch: int, progress: SweepProgress
) -> None:
    """Open every job's run, fit them as one computation, record each; on a stop, every run is
    KILLED with a checkpoint, and the stop goes on up."""
    cfg = members[0].cfg
    inputs = members[0].built.prepared()
    for member in members[1:]:
        member.built.inputs = inputs  # the data is shared: standardized once
    open_all(members, store)
    nums = [m.job.job_num for m in members]
    log.info(
        "Training jobs %s as one batch of %d (%d epochs from epoch %d)",
        compact(nums), len(members), cfg.epochs, start_epoch,
    )  # fmt: skip
    heartbeat = GroupHeartbeat(store.client, [m.run_id for m in members])
    resumed = any(m.decision.start.resume is not None for m in members)
    unwatch = watch_system(cfg, store.client, [m.run_id for m in members], resumed)
    jobs = [
        batched.Job(m.built.model, m.built.optimizer, m.built.batches, m.log_epochs,
                    steering(m.job.overrides), scheduler=m.built.scheduler, early=m.built.early)
        for m in members
    ]  # fmt: skip
    by_job = {id(job): member for job, member in zip(jobs, members, strict=True)}
    for job, member in zip(jobs, members, strict=True):
        member.trained = job
    started = time.monotonic()
    keep()  # the jobs' models, optimizers and runs live until the batch is recorded
    progress.batch(len(members), cfg.epochs + 1 - start_epoch)
    try:
        batch = batched.fit_group(
            jobs, inputs, epochs=cfg.epochs, batch_size=cfg.batch_size, start_epoch=start_epoch,
            log_every=cfg.log_every, save=lambda epoch, b: save_all(epoch, b, by_job),
            save_every_s=cfg.checkpoint.every_s, on_epoch=progress.epoch,
            loss=members[0].built.loss,
        )  # fmt: skip
    except KeyboardInterrupt:
        heartbeat.stop()
        unwatch()
        close(members, RunStatus.KILLED)
        log.warning(
            "Stopped %d runs of this batch; run the same command again to resume them",
            len(members),
        )
        raise
    except Exception as err:
        heartbeat.stop()
        unwatch()
        close(members, RunStatus.FAILED, lambda member, err=err: err)
        return
    heartbeat.stop()
    unwatch()
    batch.put_back()
    trained = time.monotonic()
    failed = [by_job[id(job)] for job in batch.jobs if job.failure is not None]
    close(failed, RunStatus.FAILED, lambda member: member.failure)
    done = [m for m in members if m not in failed]
    keep()  # and so do the epochs' metrics, until they are written
    record_all(done, store)
    progress.recorded(len(done), len(failed))
    log.info(
        "Batch of %d: trained in %.1f s, recorded in %.1f s%s", len(members),
        trained - started, time.monotonic() - trained,
        f"; {len(failed)} failed" if failed else "",
    )  # fmt: skip


def compact(nums: list[int | None]) -> str:
    return f"{nums[0]}-{nums[-1]}" if nums == list(range(nums[0], nums[-1] + 1)) else str(nums)


def open_all(members: list[Member], store: Store) -> None:
    """Open every job's run (new ones in one write, resumed ones again), each tagged with the
    batch's size; a new run's config and datasets recorded as a run alone records them."""
    size, data, first = len(members), members[0].built.data, members[0]
    inputs = dataset_inputs(data, first.cfg.data, first.job.choices.get("data"))  # shared
    openings = []
    for member in members:
        start = replace(member.decision.start, tags={**member.decision.start.tags,
                                                     BATCH_JOBS: str(size)})  # fmt: skip
        member.decision = Decision(start, member.decision.start_epoch)
        own = {**params_of(member), **class_weight_params(member.built)}
        openings.append(Opening(member.job, start, own, inputs))
    run_ids = open_runs(store.client, store.experiment_id, openings)
    location = experiment_location(store.uri, store.experiment_id)
    for member, run_id in zip(members, run_ids, strict=True):
        member.run_id, start = run_id, member.decision.start
        member.artifact_uri = (  # where MLflow puts a run's artifacts
            append_to_uri_path(location, run_id, "artifacts")
            if start.resume is None
            else start.resume.info.artifact_uri
        )
        record_job(member.job, run_id=run_id)
        # Written at each checkpoint and at the end: a buffer per job flushing on its own clock
        # would be hundreds of writes every few seconds.
        member.metrics = MetricBuffer(store.client, run_id, math.inf, start.recorded)
        if start.resume is None:
            member.checkpoints = Checkpoints.of_new_run(store.client, run_id)
            unresolved = written_config(member)
            log_config_file(store.client, run_id, member.cfg, member.artifact_uri, unresolved)
            log_class_weights(store.client, run_id, member.built, member.artifact_uri)
        else:
            member.checkpoints = Checkpoints(store.client, store.client.get_run(run_id))


def written_config(member: Member) -> str | None:
    """The job's ``.hydra/config.yaml`` as its launcher wrote it (``OmegaConf.to_yaml`` of its
    config), where it has one."""
    subdir, output_dir = member.config.hydra.output_subdir, member.job.output_dir
    if subdir is None or output_dir is None:
        return None
    try:
        return (output_dir / str(subdir) / "config.yaml").read_text(encoding="utf-8")
    except OSError:
        return None


def save_all(epoch: int, batch: batched.Batch, by_job: dict[int, Member]) -> None:
    """Checkpoint every job of ``batch`` after ``epoch``, in the format a run alone saves, its
    metrics written first (all jobs' at once)."""
    batch.put_back()
    members = [by_job[id(job)] for job in batch.jobs]
    flush_all([m.metrics for m in members])
    for member in members:
        save_state(member.checkpoints, member.built, epoch)


def close(members: list[Member], status: RunStatus,
          reason: Callable[[Member], BaseException] | None = None) -> None:  # fmt: skip
    """End the runs of jobs that did not finish: metrics and files written, the reason
    (``reason(member)``) tagged and recorded in the job dir."""
    flush_all([m.metrics for m in members])
    for member in members:
        client, run_id = member.metrics.client, member.run_id
        if reason is not None:
            err = reason(member)
            resumable = str(getattr(err, "resumable", True)).lower()
            tags = {FAILURE_REASON: redact(first_line(err)), FAILURE_RESUMABLE: resumable}
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            fail(member, err)
        else:
            record_job(member.job, status=RunStatus.to_string(status))
        write_log(member)
        attempt = attempt_dir(member.decision.start.attempt)
        log_job_files(client, run_id, member.job.output_dir, attempt, member.artifact_uri)
    status_name = RunStatus.to_string(status)
    if members:
        terminate_runs(store_uri(members), {m.run_id: status_name for m in members})


def record_all(members: list[Member], store: Store) -> None:
    """Record each job's trained model as a run alone does (final metrics, test report, model),
    the models and metrics of all in one write each, and close the runs FINISHED."""
    uri, client, records = store.uri, store.client, []
    direct = writes_directly(uri, store.experiment_id)
    for member in members:
        cfg, built = member.cfg, member.built
        if final_state_missing(cfg, built, member.checkpoints):
            flush_all([member.metrics])
            save_state(member.checkpoints, built, built.last_epoch(cfg.epochs))
        final = final_metrics(built, client, member.run_id, cfg.epochs)
        member.metrics.log_summary(final)
        data = built.data
        model = deployable(built)
        template = template_for(model, built.example, data.class_names, data.feature_names)
        params = params_of(member)
        if direct:
            records += template.write_files(uri, member.run_id, model, store.experiment_id, params)
        else:
            template.log(client, member.run_id, model, store.experiment_id, params)
        member.outcome = Outcome(member.run_id, final, final[cfg.sweep.metric.name])
    if records:
        write_logged_models(uri, records)
    flush_all([m.metrics for m in members])
    for member in members:
        if not member.cfg.checkpoint.keep and member.checkpoints.latest:
            member.checkpoints.remove()
        name, final = member.decision.start.run_name, member.outcome.metrics
        lines = finished_lines(store, name, member.run_id, final)
        member.lines += [(now_ms(), line) for line in lines]
        write_log(member)
        attempt = attempt_dir(member.decision.start.attempt)
        log_job_files(client, member.run_id, member.job.output_dir, attempt, member.artifact_uri)
    terminate_runs(uri, {m.run_id: "FINISHED" for m in members}, client=client)
    for member in members:
        record_job(member.job, status="FINISHED")


def store_uri(members: list[Member]) -> str:
    return members[0].metrics.client.tracking_uri


def params_of(member: Member) -> dict:
    """The params the run logged (its config's), which its LoggedModels carry too (made once
    a job: its run's opening and its models both need them)."""
    if member.params is None:
        found = params(member.cfg, member.job.choices)
        member.params = {k: str(redact_value(v)) for k, v in found.items()}
    return member.params


def now_ms() -> int:
    return int(time.time() * 1000)


def write_log(member: Member) -> None:
    """Add the job's lines (its epochs', how it ended) to its log file, as a job alone writes
    them (``hydra/job_logging``'s file format)."""
    path = member.job.output_dir / f"{member.config.hydra.job.name}.log"
    formatter = logging.Formatter(LOG_FORMAT)
    with path.open("a") as out:
        for ms, line in member.lines:
            name = (
                "pipeline.core.loop"
                if line.startswith(("Epoch", "Early stopping"))
                else "pipeline.stage"
            )
            record = logging.LogRecord(name, logging.INFO, "", 0, line, None, None)
            record.created, record.msecs = ms / 1000, ms % 1000
            out.write(formatter.format(record) + "\n")
    member.lines.clear()


def run_alone(hydra_context, task_function) -> Callable[[DictConfig], JobReturn]:
    """Hydra's ``run_job`` for one job, as the basic launcher calls it."""

    def alone(config: DictConfig) -> JobReturn:
        return run_job(
            hydra_context=hydra_context,
            task_function=task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )

    return alone
