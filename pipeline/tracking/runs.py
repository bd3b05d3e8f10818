"""A run's lifecycle: open it (nested under its sweep), and close it with the status that says
what happened: FINISHED, FAILED (with the reason) or KILLED, its metrics and files written first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from pipeline.errors import first_line
from pipeline.runtime import interrupts
from pipeline.runtime.job import JobContext, record_job
from pipeline.tracking.metrics import MetricBuffer
from pipeline.tracking.records import log_job_files
from pipeline.tracking.redact import redact
from pipeline.tracking.store import STORE_ERRORS, store_error


@contextmanager
def tracked_run(
    uri: str,
    experiment_id: str,
    job: JobContext,
    *,
    run_name: str,
    description: str,
    tags: dict[str, str],
    flush_every_s: float,
) -> Iterator[MetricBuffer]:
    """Open a run; on exit flush metrics, log the job's files and set FINISHED/FAILED/KILLED."""
    job_tags = {"hydra.overrides": " ".join(job.overrides)}
    if job.job_num is not None:
        job_tags["hydra.job_num"] = str(job.job_num)
    mlflow.set_tracking_uri(uri)
    while mlflow.active_run():  # a run an earlier job in this (reused) worker left open
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
    with interrupts.deferred():
        try:
            run = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=redact(run_name),
                parent_run_id=job.parent_run_id,  # nests the run under its sweep
                description=redact(description),
                tags={key: redact(str(value)) for key, value in {**job_tags, **tags}.items()},
            )
        except STORE_ERRORS as err:
            raise store_error(uri, err) from None
        record_job(job, run_id=run.info.run_id)
        metrics = MetricBuffer(MlflowClient(uri), run.info.run_id, flush_every_s)
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
                log_job_files(job)
            finally:
                mlflow.end_run(RunStatus.to_string(status))
