"""Finding runs for the commands that read the store: a sweep, its runs, how they rank, its best.

A sweep's parent run (``pipeline.tracking.sweep.parent``) is the run tagged ``sweep.dir``; its jobs'
runs are nested under it (``mlflow.parentRunId``). It records how its runs rank as the tags
``sweep.metric`` and ``sweep.direction`` (sweeps made before those tags existed rank as their
runs' ``config.yaml`` says) and, once it ended, its best run as ``best_run_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.tags import (
    BEST_RUN_ID,
    CV_FOLD,
    CV_FOLDS,
    PARENT_RUN_ID,
    SWEEP_DIR,
    SWEEP_DIRECTION,
    SWEEP_METRIC,
)

if TYPE_CHECKING:  # MLflow (and torch) load where a client is used: ``compare`` may need neither
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

PAGE_SIZE = 1000  # runs per search_runs request; the page token fetches the rest


@dataclass(frozen=True)
class Objective:
    """What ranks a sweep's runs: a metric, minimized or maximized (``sweep.*`` settings)."""

    metric: str = "objective"
    direction: str = "minimize"

    @property
    def descending(self) -> bool:
        return self.direction == "maximize"


def search_all(
    client: MlflowClient, experiment_id: str, filter_string: str, order_by: list[str] | None
) -> list[Run]:
    """Every run that ``filter_string`` selects, in the store's ``order_by`` order, page by page."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string,
            max_results=PAGE_SIZE,
            order_by=order_by,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def ranked(metric: str, descending: bool) -> list[str]:
    """``order_by`` for ``search_runs``: by ``metric`` (runs without it last), then oldest first."""
    return [f"metrics.`{metric}` {'DESC' if descending else 'ASC'}", "attributes.start_time ASC"]


def is_sweep(run: Run) -> bool:
    return SWEEP_DIR in run.data.tags


def refuse_fold(run: Run, command: str) -> None:
    """A cross-validation fold's run trains, resumes and registers with its configuration's run
    (``pipeline.cv``): one line naming that run, for ``python -m pipeline.<command>``."""
    if CV_FOLD not in run.data.tags:
        return
    tags, run_id = run.data.tags, run.info.run_id
    parent = tags.get(PARENT_RUN_ID)
    raise PipelineError(
        f"Run {run_id} is fold {tags[CV_FOLD]}/{tags.get(CV_FOLDS)} of the cross-validated run "
        f"{parent}, which trains, resumes and registers its folds with it. "
        f"Fix: python -m pipeline.{command} {parent}"
    )


def latest_sweep(client: MlflowClient, experiment_id: str) -> Run | None:
    """The sweep parent run that started last in the experiment."""
    found = client.search_runs(
        [experiment_id],
        sweeps_filter(),
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return found[0] if found else None


def sweep_filter(parent: Run) -> str:
    """``search_runs`` filter for the runs nested under ``parent``."""
    return nested_filter(parent.info.run_id)


def nested_filter(parent_id: str) -> str:
    """``search_runs`` filter for the runs nested under the run ``parent_id``."""
    return f"tags.`{PARENT_RUN_ID}` = '{parent_id}'"


def sweeps_filter() -> str:
    """``search_runs`` filter for sweeps' parent runs."""
    return f"tags.`{SWEEP_DIR}` IS NOT NULL"


def experiment_filter() -> str:
    """``search_runs`` filter for an experiment's training runs (no sweep parents, and no
    cross-validation folds: their configuration's run stands for them)."""
    return f"tags.`{SWEEP_DIR}` IS NULL AND tags.`{CV_FOLD}` IS NULL"


def objective(client: MlflowClient, parent: Run | None, example: Run | None) -> Objective:
    """How the runs rank: the parent's ``sweep.*`` tags, else the ``sweep`` settings in
    ``example``'s recorded config, else the default (``objective``, minimized)."""
    from pipeline.tracking.run.files import find_recorded_config

    tags = parent.data.tags if parent is not None else {}
    if SWEEP_METRIC in tags or example is None:
        return ranking(tags, None)
    return ranking(tags, find_recorded_config(client, example.info.run_id))


def ranking(tags: dict[str, str], config: dict[str, Any] | None) -> Objective:
    """The ``sweep.*`` tags of a sweep's parent run if it has them, else the ``sweep`` settings
    of a recorded config, else the default."""
    if SWEEP_METRIC in tags:
        return Objective(tags[SWEEP_METRIC], tags.get(SWEEP_DIRECTION, "minimize"))
    sweep = (config or {}).get("sweep") or {}
    return Objective(sweep.get("metric", "objective"), sweep.get("direction", "minimize"))


def best_run(client: MlflowClient, parent: Run) -> Run:
    """The sweep's best run by its objective (the parent's ``best_run_id``)."""
    from pipeline.tracking.store.access import fetch_run

    best_id = parent.data.tags.get(BEST_RUN_ID)
    if not best_id:
        raise PipelineError(
            f"Sweep {parent.info.run_id} has no best run (no job finished, or the sweep has "
            "not ended). Fix: pick a run with `python -m pipeline.compare "
            f"{parent.info.run_id}` and pass its id"
        )
    return fetch_run(client, best_id)


def fold_runs(client: MlflowClient, experiment_id: str, parent_id: str) -> dict[int, Run]:
    """The fold runs nested under the cross-validated run ``parent_id``, by fold."""
    nested = client.search_runs(
        [experiment_id],
        f"tags.`{PARENT_RUN_ID}` = '{parent_id}' AND tags.`{CV_FOLD}` IS NOT NULL",
        max_results=1000,
    )
    return {int(run.data.tags[CV_FOLD]): run for run in nested}
