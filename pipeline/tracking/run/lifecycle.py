"""A run's lifecycle: open it (a new run nested under its sweep, or an interrupted one again),
keep its heartbeat while it trains, and close it with the status that says what happened:
FINISHED, FAILED (with the reason) or KILLED, its metrics and files written first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Run, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from pipeline.errors import first_line
from pipeline.runtime import interrupts, process
from pipeline.runtime.job import JobContext, record_job
from pipeline.tags import (
    FAILURE_REASON,
    FAILURE_RESUMABLE,
    HYDRA_JOB_NUM,
    HYDRA_OVERRIDES,
    JOB_OUTPUT_DIR,
    PROCESS_HEARTBEAT,
    RESUME_COUNT,
)
from pipeline.tracking.resume.state import HEARTBEAT_S
from pipeline.tracking.run.files import log_job_files
from pipeline.tracking.run.metrics import MetricBuffer
from pipeline.tracking.store import bulk
from pipeline.tracking.store.access import STORE_ERRORS, store_error
from pipeline.tracking.store.redact import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStart:
    """How to open the run: a new one (``resume`` None) or ``resume`` again."""

    run_name: str
    description: str
    tags: dict[str, str]
    flush_every_s: float
    resume: Run | None = None
    recorded: dict[str, int] | None = None  # a resumed run's last step of each metric

    @property
    def attempt(self) -> int:
        """1 for a new run, 2 for its first resumption, ..."""
        return int(self.resume.data.tags.get(RESUME_COUNT, 0)) + 2 if self.resume else 1


def attempt_dir(attempt: int) -> str:
    """Where an attempt's job files go among the run's artifacts."""
    return "" if attempt == 1 else f"attempt-{attempt}/"


def now_ms() -> str:
    return str(int(time.time() * 1000))


class Heartbeat:
    """A thread that writes the run's ``process.heartbeat`` tag every ``HEARTBEAT_S``."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, args=(client, run_id), daemon=True)
        self.thread.start()

    def _beat(self, client: MlflowClient, run_id: str) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            try:
                client.set_tag(run_id, PROCESS_HEARTBEAT, now_ms())
            except Exception:  # a missed beat is written at the next one
                continue

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


def liveness(job: JobContext) -> dict[str, str]:
    """Where the run lives now: its process, a first heartbeat, the job's dir."""
    tags = {**process.identity(), PROCESS_HEARTBEAT: now_ms()}
    if job.output_dir is not None:
        tags[JOB_OUTPUT_DIR] = str(job.output_dir)
    return tags


def job_tags(job: JobContext, start: RunStart) -> dict[str, str]:
    """A new run's own tags: the job's overrides and number, then ``start``'s, masked."""
    tags = {HYDRA_OVERRIDES: " ".join(job.overrides)}
    if job.job_num is not None:
        tags[HYDRA_JOB_NUM] = str(job.job_num)
    return {key: redact(str(value)) for key, value in {**tags, **start.tags}.items()}


def clear_failure(client: MlflowClient, run: Run) -> None:
    """No failure of an earlier attempt on a run that starts again."""
    for tag in (FAILURE_REASON, FAILURE_RESUMABLE):
        if tag in run.data.tags:
            client.delete_tag(run.info.run_id, tag)


def _open(client: MlflowClient, experiment_id: str, job: JobContext, start: RunStart) -> Run:
    if start.resume is not None:
        return _reopen(client, start.resume, {**start.tags, **liveness(job)})
    return mlflow.start_run(
        experiment_id=experiment_id,
        run_name=redact(start.run_name),
        parent_run_id=job.parent_run_id,  # nests the run under its sweep
        description=redact(start.description),
        tags={**job_tags(job, start), **liveness(job)},
    ).info


def _reopen(client: MlflowClient, run: Run, tags: dict[str, str]) -> Run:
    """The same run again, RUNNING: where it runs now, how often it was resumed; the last
    attempt's job files, if it died before logging them; no failure of an earlier attempt."""
    run_id, attempt = run.info.run_id, int(run.data.tags.get(RESUME_COUNT, 0)) + 1
    lost = Path(run.data.tags.get(JOB_OUTPUT_DIR, "/nonexistent"))
    logged = {a.path for a in client.list_artifacts(run_id, attempt_dir(attempt).rstrip("/"))}
    clear_failure(client, run)
    info = mlflow.start_run(run_id=run_id, tags={**tags, RESUME_COUNT: str(attempt)}).info
    if lost.is_dir() and not any(path.endswith(".log") for path in logged):
        log_job_files(client, run_id, lost, attempt_dir(attempt))
    return info


@contextmanager
def tracked_run(
    uri: str, experiment_id: str, job: JobContext, start: RunStart
) -> Iterator[MetricBuffer]:
    """Open the run; on exit flush metrics, log the job's files and set FINISHED/FAILED/KILLED."""
    mlflow.set_tracking_uri(uri)
    while mlflow.active_run():  # a run an earlier job in this (reused) worker left open
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
    client = MlflowClient(uri)
    with interrupts.deferred():
        try:
            info = _open(client, experiment_id, job, start)
        except STORE_ERRORS as err:
            raise store_error(uri, err) from None
        record_job(job, run_id=info.run_id)
        metrics = MetricBuffer(client, info.run_id, start.flush_every_s, start.recorded)
        heartbeat = Heartbeat(client, info.run_id)
        status = RunStatus.FAILED
        try:
            yield metrics  # a signal that came after training stops the process once closed
            status = RunStatus.FINISHED
        except KeyboardInterrupt:
            status = RunStatus.KILLED
            log.warning(
                "Run %r (%s) stopped; continue it with `python -m pipeline.resume %s`",
                redact(start.run_name), info.run_id, info.run_id,
            )  # fmt: skip
            raise
        except Exception as err:
            reason = {FAILURE_REASON: redact(first_line(err))}
            reason[FAILURE_RESUMABLE] = str(getattr(err, "resumable", True)).lower()
            mlflow.set_tags(reason)
            raise
        finally:
            try:
                heartbeat.stop()
                metrics.flush()
                log_job_files(client, info.run_id, job.output_dir, attempt_dir(start.attempt))
            finally:
                mlflow.end_run(RunStatus.to_string(status))


def new_run_tags(job: JobContext, start: RunStart, context: dict[str, str]) -> dict[str, str]:
    """Every tag ``_open`` gives a new run (``context``: ``resolve_tags({})``, MLflow's user
    and source tags, which are the same for every run of a process)."""
    given = {**job_tags(job, start), **liveness(job), MLFLOW_RUN_NOTE: redact(start.description)}
    if job.parent_run_id:
        given[MLFLOW_PARENT_RUN_ID] = job.parent_run_id
    return {**context, **given}


def reopen_run(client: MlflowClient, job: JobContext, start: RunStart) -> str:
    """``_reopen`` without making the run the active one: RUNNING again, where it runs now,
    how often it was resumed, no failure of an earlier attempt."""
    run = start.resume
    run_id, attempt = run.info.run_id, start.attempt - 1
    clear_failure(client, run)
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    tags = {**start.tags, **liveness(job), RESUME_COUNT: str(attempt)}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    return run_id


@dataclass(frozen=True)
class Opening:
    """A run of a batched group to open: its job, how (``RunStart``), and for a new run its
    params and dataset inputs."""

    job: JobContext
    start: RunStart
    params: dict[str, str]
    inputs: list


def open_runs(client: MlflowClient, experiment_id: str, openings: list[Opening]) -> list[str]:
    """Open the runs of a batched group: new ones all at once (``bulk.create_runs``, as
    ``mlflow.start_run`` would make each), resumed ones again. Their ids, in order."""
    context = resolve_tags({})
    new = [o for o in openings if o.start.resume is None]
    specs = [
        bulk.RunSpec(experiment_id, redact(o.start.run_name), new_run_tags(o.job, o.start, context),
                     o.params, o.inputs)
        for o in new
    ]  # fmt: skip
    created = iter(bulk.create_runs(client.tracking_uri, specs, client) if specs else [])
    return [
        next(created) if o.start.resume is None else reopen_run(client, o.job, o.start)
        for o in openings
    ]


class GroupHeartbeat(Heartbeat):
    """``Heartbeat`` for the runs of a batched group: one thread, one write for all."""

    def __init__(self, client: MlflowClient, run_ids: list[str]) -> None:
        self.run_ids = run_ids
        super().__init__(client, "")

    def _beat(self, client: MlflowClient, run_id: str) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            beat = {PROCESS_HEARTBEAT: now_ms()}
            try:
                bulk.write_metrics(
                    client.tracking_uri, [], dict.fromkeys(self.run_ids, beat), client
                )
            except Exception:  # a missed beat is written at the next one
                continue
