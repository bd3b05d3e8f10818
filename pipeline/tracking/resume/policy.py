"""What a job continues: the earlier run it resumes or has already done, and whether it can.

``earlier_run`` is the policy (``tracking.resume``, a requeued job's own run, a sweep's run of
the same configuration); ``check_resumable`` applies the rules of ``state`` to it.
"""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from pipeline.errors import PipelineError
from pipeline.runtime.job import JobContext, read_job
from pipeline.tags import DATA_DIGEST
from pipeline.tracking.resume.state import State, runs_with_key, state, why_not
from pipeline.tracking.store.access import fetch_run
from pipeline.tracking.store.redact import redact


def earlier_run(
    client: MlflowClient,
    experiment_id: str,
    cfg: DictConfig,
    job: JobContext,
    key: str,
    known: dict[str, list[Run]] | None = None,
) -> Run | None:
    """The run this job continues or has already done, if any: the run ``tracking.resume``
    names; the run this job's dir records (a job requeued by its scheduler); in a sweep, a run
    of the same experiment (``run.key``) that FINISHED or was interrupted (``known``: the
    experiment's runs by key, read once for a batched group)."""
    if cfg.tracking.resume:
        return fetch_run(client, cfg.tracking.resume)
    own = read_job(job.output_dir) if job.job_num is not None and job.output_dir else {}
    if own.get("run_id"):
        return fetch_run(client, own["run_id"])
    if job.job_num is None or not cfg.sweep.resume:
        return None
    same = known.get(key, []) if known is not None else runs_with_key(client, experiment_id, key)
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
