"""A sweep's jobs trained in groups: each group one batched computation, each job a whole run.

The vectorized launcher (``conf/hydra/launcher/vectorized.yaml``) hands every composed job to
``launch``. Jobs that share data, model, optimizer class, epochs, batch size, device, threads
and store form a group; each group goes through ``pipeline.stage``'s phases: **build** (the
data once, each job's model and optimizer from its seed), **decide** (new, resumed or done, per
job), **fit** (``pipeline.core.batched.fit_group``) and **record** (each job's run, as a run
alone records it). A job that cannot batch (L-BFGS, dropout, a group of one) trains alone,
through Hydra's ``run_job``, as the basic launcher would.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlflow
from hydra.core.utils import JobReturn, JobStatus, run_job
from mlflow.entities import RunStatus, RunTag
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from pipeline.config import validate
from pipeline.core import batched, checkpoint
from pipeline.errors import PipelineError, first_line
from pipeline.runtime import interrupts
from pipeline.runtime.job import JobContext, record_job
from pipeline.stage import (
    Built,
    Decision,
    Outcome,
    Store,
    build_data,
    build_run,
    decide,
    finished,
    log_inputs,
    record,
    steering,
)
from pipeline.tags import BATCH_JOBS, FAILURE_REASON, FAILURE_RESUMABLE
from pipeline.tracking.run.checkpoints import Checkpoints
from pipeline.tracking.run.files import log_job_files
from pipeline.tracking.run.lifecycle import GroupHeartbeat, attempt_dir, open_run
from pipeline.tracking.run.metrics import MetricBuffer
from pipeline.tracking.store.redact import redact

log = logging.getLogger(__name__)
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # hydra/job_logging's file
# What jobs of one group must share (less the seed and the optimizer's numbers).
SHARED = ("data", "model", "epochs", "batch_size", "device", "threads", "log_every", "tracking",
          "checkpoint", "sweep")  # fmt: skip


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

    def log_line(self, epoch: int, values: dict[str, float], ms: int) -> None:
        self.metrics.log(epoch, values, ms)
        if epoch % self.cfg.log_every == 0 or epoch == self.cfg.epochs:
            line = f"Epoch {epoch:4d}/{self.cfg.epochs} Cost: {values['cost']:.6f}"
            self.lines.append((ms, line))


def group_key(member: Member) -> str:
    cfg = member.cfg
    shared = {key: OmegaConf.select(cfg, key) for key in (*SHARED, "optim._target_")}
    return json.dumps(
        {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
         for k, v in shared.items()}, sort_keys=True, default=str,
    )  # fmt: skip


def launch(configs: Sequence[DictConfig], alone: Callable[[DictConfig], JobReturn],
           group_size: int) -> list[JobReturn]:  # fmt: skip
    """Train the composed ``configs``, in groups where they batch; ``alone(config)`` trains one
    job as the basic launcher does. One ``JobReturn`` per config, in order."""
    members = [Member(c, task_config(c), JobContext.of(c.hydra)) for c in configs]
    valid = [m for m in members if valid_config(m)]
    groups: dict[str, list[Member]] = {}
    for member in valid:
        groups.setdefault(group_key(member), []).append(member)
    returns: dict[int, JobReturn] = {}
    for group in groups.values():
        for start in range(0, len(group), group_size):
            chunk = group[start : start + group_size]
            for member, ret in train_chunk(chunk, alone):
                returns[id(member)] = ret
    for member in members:
        if id(member) not in returns:
            returns[id(member)] = job_return(member)
    return [returns[id(m)] for m in members]


def task_config(config: DictConfig) -> DictConfig:
    """The job's config less its hydra node, as ``run_job`` gives the task."""
    cfg = copy.deepcopy(config)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


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
    ret.cfg, ret.hydra_cfg = member.cfg, OmegaConf.create({"hydra": member.config.hydra})
    ret.overrides = list(member.job.overrides)
    ret.working_dir = str(Path.cwd())
    ret.task_name = str(member.config.hydra.job.name)
    if isinstance(member.outcome, Outcome):
        ret.status, ret.return_value = JobStatus.COMPLETED, member.outcome.value
    else:  # a failed job returns NaN, as a job of the basic launcher does
        ret.status, ret.return_value = JobStatus.COMPLETED, float("nan")
    return ret


def train_chunk(chunk: list[Member], alone: Callable[[DictConfig], JobReturn]):
    """Yield (member, JobReturn) for each job of ``chunk``: batched, or one at a time."""
    data, scaler = build_data(chunk[0].cfg)
    first = build_run(chunk[0].cfg, data, scaler)
    reason = batched.why_not_batchable(first.model, first.optimizer)
    if reason is None and len(chunk) == 1:
        reason = "a group of one"
    if reason is not None:
        nums = ", ".join(str(m.job.job_num) for m in chunk)
        log.info("Jobs %s train one at a time: %s", nums, reason)
        for member in chunk:
            yield member, alone(member.config)
        return
    store = Store.open(chunk[0].cfg)
    mlflow.set_tracking_uri(store.uri)  # each run is recorded as the active run in turn
    pending: dict[int, list[Member]] = {}
    for member in chunk:
        try:
            member.built = build_run(member.cfg, data, scaler)
            member.decision = decide(member.cfg, member.job, store, member.built)
        except PipelineError as err:
            fail(member, err)
            continue
        if member.decision.done is not None:
            member.outcome = member.decision.done
        else:
            pending.setdefault(member.decision.start_epoch, []).append(member)
    for start_epoch, members in pending.items():
        with interrupts.deferred():  # a signal stops the batch at an epoch boundary
            train_batch(members, store, start_epoch)
    for member in chunk:
        yield member, job_return(member)


def train_batch(members: list[Member], store: Store, start_epoch: int) -> None:
    """Open every job's run, fit them as one computation, record each; on a stop, every run is
    KILLED with a checkpoint, and the stop goes on up."""
    cfg = members[0].cfg
    inputs = members[0].built.prepared()
    for member in members[1:]:
        member.built.inputs = inputs  # the data is shared: standardized once
    for member in members:
        open_member(member, store, len(members))
    nums = [m.job.job_num for m in members]
    log.info(
        "Training jobs %s as one batch of %d (%d epochs from epoch %d)",
        compact(nums), len(members), cfg.epochs, start_epoch,
    )  # fmt: skip
    heartbeat = GroupHeartbeat(store.client, [m.run_id for m in members])
    jobs = [
        batched.Job(m.built.model, m.built.optimizer, m.built.batches, m.log_line,
                    steering(m.job.overrides))
        for m in members
    ]  # fmt: skip
    by_job = {id(job): member for job, member in zip(jobs, members, strict=True)}
    started = time.monotonic()
    try:
        batch = batched.fit_group(
            jobs, inputs, epochs=cfg.epochs, batch_size=cfg.batch_size, start_epoch=start_epoch,
            log_every=cfg.log_every, save=lambda epoch, b: save_all(epoch, b, by_job),
            save_every_s=cfg.checkpoint.every_s,
        )  # fmt: skip
    except KeyboardInterrupt:
        heartbeat.stop()
        for member in members:
            close(member, RunStatus.KILLED)
        log.warning(
            "Stopped %d runs of this batch; run the same command again to resume them",
            len(members),
        )
        raise
    except Exception as err:
        heartbeat.stop()
        for member in members:
            close(member, RunStatus.FAILED, err)
        return
    heartbeat.stop()
    batch.put_back()
    log.info("Batch trained in %.1f s", time.monotonic() - started)
    for job in batch.jobs:
        member = by_job[id(job)]
        if job.failure is not None:
            close(member, RunStatus.FAILED, job.failure)
            continue
        try:
            record_member(member, store)
        except Exception as err:  # this job's record failed (its run is FAILED): the rest go on
            fail(member, err)


def compact(nums: list[int | None]) -> str:
    return f"{nums[0]}-{nums[-1]}" if nums == list(range(nums[0], nums[-1] + 1)) else str(nums)


def open_member(member: Member, store: Store, size: int) -> None:
    """Open the job's run (new or resumed) and record what a new run records first."""
    start = member.decision.start
    start = replace(start, tags={**start.tags, BATCH_JOBS: str(size)})
    member.decision = Decision(start, member.decision.start_epoch)
    member.run_id = open_run(store.client, store.experiment_id, member.job, start)
    record_job(member.job, run_id=member.run_id)
    # Written at each checkpoint and at the end: a buffer per job flushing on its own clock
    # would be hundreds of writes every few seconds.
    member.metrics = MetricBuffer(store.client, member.run_id, math.inf, start.recorded)
    member.checkpoints = Checkpoints(store.client, store.client.get_run(member.run_id))
    if start.resume is None:
        log_inputs(store.client, member.run_id, member.cfg, member.job, member.built.data)


def save_all(epoch: int, batch: batched.Batch, by_job: dict[int, Member]) -> None:
    """Checkpoint every job of ``batch`` after ``epoch``, in the format a run alone saves."""
    batch.put_back()
    for job in batch.jobs:
        member = by_job[id(job)]
        member.metrics.flush()
        built = member.built
        state = checkpoint.capture(epoch, built.model, built.optimizer, built.batches)
        member.checkpoints.save(state)


def close(member: Member, status: RunStatus, err: BaseException | None = None) -> None:
    """End a job's run that did not finish: metrics and files written, the reason tagged."""
    client, run_id = member.metrics.client, member.run_id
    member.metrics.flush()
    if err is not None:
        resumable = str(getattr(err, "resumable", True)).lower()
        tags = {FAILURE_REASON: redact(first_line(err)), FAILURE_RESUMABLE: resumable}
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        fail(member, err)
    handler = write_log(member)
    try:
        with mlflow.start_run(run_id=run_id):
            handler.flush()
            log_job_files(member.job.output_dir, attempt_dir(member.decision.start.attempt))
            mlflow.end_run(RunStatus.to_string(status))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    if err is None:
        record_job(member.job, status=RunStatus.to_string(status))


def record_member(member: Member, store: Store) -> None:
    """Record the job's trained model and close its run FINISHED, as a run alone does."""
    cfg, built = member.cfg, member.built

    def save_checkpoint(epoch: int) -> None:
        member.metrics.flush()
        state = checkpoint.capture(epoch, built.model, built.optimizer, built.batches)
        member.checkpoints.save(state)

    handler = write_log(member)
    try:
        with mlflow.start_run(run_id=member.run_id):
            final = record(cfg, built, member.metrics, member.checkpoints, save_checkpoint)
            member.metrics.flush()
            name = member.decision.start.run_name
            member.outcome = finished(cfg, store, name, member.run_id, final)
            handler.flush()
            attempt = attempt_dir(member.decision.start.attempt)
            log_job_files(member.job.output_dir, attempt)
        record_job(member.job, status="FINISHED")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def write_log(member: Member) -> logging.Handler:
    """The job's log file (what a job alone writes): its epoch lines, then whatever is logged
    until the returned handler is removed."""
    path = member.job.output_dir / f"{member.config.hydra.job.name}.log"
    formatter = logging.Formatter(LOG_FORMAT)
    with path.open("a") as out:
        for ms, line in member.lines:
            record = logging.LogRecord("pipeline.core.loop", logging.INFO, "", 0, line, None, None)
            record.created, record.msecs = ms / 1000, ms % 1000
            out.write(formatter.format(record) + "\n")
    member.lines.clear()
    handler = logging.FileHandler(path)
    handler.setFormatter(formatter)
    logging.getLogger().addHandler(handler)
    return handler


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
