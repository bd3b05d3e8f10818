"""A sweep's parent run: its jobs' runs nest under it; at the end, a summary and the best run.

The parent run's id is left in the sweep dir's ``sweep.json`` (with the swept keys and, at the
end, the outcome), where every job finds it (``pipeline.runtime.job``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis

from pipeline.runtime.job import write_sweep_file
from pipeline.tags import (
    BEST_RUN_ID,
    BEST_RUN_NAME,
    HYDRA_OVERRIDES,
    SWEEP_DIR,
    SWEEP_DIRECTION,
    SWEEP_KEY,
    SWEEP_LAUNCHER,
    SWEEP_METRIC,
    SWEEP_SWEEPER,
)
from pipeline.tracking.resume.identity import sweep_key
from pipeline.tracking.store.bulk import PARAMS_PER_REQUEST
from pipeline.tracking.store.redact import redact
from pipeline.tracking.sweep.curves import log_cost_curves
from pipeline.tracking.sweep.results import JobResult
from pipeline.tracking.sweep.table import table

log = logging.getLogger(__name__)


def start_parent(
    client: MlflowClient,
    experiment_id: str,
    sweep_dir: Path,
    overrides: list[str],
    swept: list[str],
    launcher: str,
    sweeper: str,
    resume: bool,
    objective: tuple[str, str],  # sweep.metric, sweep.direction
) -> str:
    """The sweep's run, its id left in the sweep dir where every job finds it: with ``resume``,
    the run of the last launch of the same sweep (``sweep.key``: overrides, sweeper, code)
    continued, so that its jobs' runs stay under one parent; else a new one."""
    key = sweep_key(overrides, sweeper)
    tags = {
        SWEEP_DIR: str(sweep_dir.resolve()),
        SWEEP_LAUNCHER: launcher,
        SWEEP_SWEEPER: sweeper,
        SWEEP_METRIC: objective[0],
        SWEEP_DIRECTION: objective[1],
        HYDRA_OVERRIDES: redact(" ".join(overrides)),
        SWEEP_KEY: key,
    }
    earlier = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{SWEEP_KEY}` = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if resume and earlier:
        parent_id = earlier[0].info.run_id
        client.update_run(parent_id, status="RUNNING")
        client.log_batch(parent_id, tags=[RunTag(k, v) for k, v in tags.items()])
    else:
        name = " ".join(["sweep", *overrides])
        if sweeper not in ("BasicSweeper", "GridSweeper"):  # the grid sweepers: no suffix
            name += f" ({sweeper})"
        parent_id = client.create_run(experiment_id, run_name=redact(name), tags=tags).info.run_id
    write_sweep_file(sweep_dir, parent_run_id=parent_id, swept=swept)
    return parent_id


def log_summary(
    client: MlflowClient,
    parent_id: str,
    results: list[JobResult],
    best_result: JobResult | None,
    metric: str,
) -> None:
    """Log the table, a PNG of every cost curve, and the best run, to the parent run: its
    counts, best metric and tags in one ``log_batch``, then the best run's params as
    ``best.<key>``, 100 a request. A resumed sweep whose best run changed keeps the first
    attempt's ``best.*`` params (MLflow params never change); its tags name the new best."""
    client.log_text(parent_id, table(results) + "\n", "summary.txt")
    log_cost_curves(client, parent_id, [r for r in results if r.run is not None])
    finished = sum(r.status == "FINISHED" for r in results)
    now = get_current_time_millis()
    metrics = [Metric("jobs_finished", finished, now, 0),
               Metric("jobs_failed", len(results) - finished, now, 0)]  # fmt: skip
    if best_result is None:
        client.log_batch(parent_id, metrics=metrics)
        return
    tags = [RunTag(BEST_RUN_ID, best_result.run_id),
            RunTag(BEST_RUN_NAME, best_result.run.run_name)]  # fmt: skip
    metrics.append(Metric(f"best_{metric}", best_result.metric(metric), now, 0))
    client.log_batch(parent_id, metrics=metrics, tags=tags)
    params = [Param(f"best.{key}", value) for key, value in best_result.run.params.items()]
    try:
        for start in range(0, len(params), PARAMS_PER_REQUEST):
            client.log_batch(parent_id, params=params[start : start + PARAMS_PER_REQUEST])
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(INVALID_PARAMETER_VALUE):
            raise
        log.warning(
            "The best run is now %s; the parent run's best.* params keep an earlier attempt's "
            "best (MLflow params never change): see its %s tag",
            best_result.run_id,
            BEST_RUN_ID,
        )
