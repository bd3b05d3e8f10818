"""Every job of a sweep and how it ended, from its job dir's ``job.json`` and its run in the
store; and the best of them by the sweep's objective."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipeline.runtime.job import read_job
from pipeline.tags import FAILURE_REASON


@dataclass(frozen=True)
class JobResult:
    """One job of the sweep: its overrides, what its job dir says, and its run (if any)."""

    num: int
    overrides: str
    status: str  # the run's status, or NO RUN when the job failed before training
    reason: str  # why it did not finish
    run: Run | None

    @property
    def run_id(self) -> str:
        return self.run.info.run_id if self.run else ""

    def metric(self, key: str) -> float:
        return self.run.data.metrics.get(key, math.nan) if self.run else math.nan

    @property
    def accuracy(self) -> float:
        return self.metric("test_accuracy" if self.run and "test_accuracy" in
                           self.run.data.metrics else "final_accuracy")  # fmt: skip


def collect(client: MlflowClient, experiment_id: str, sweep_dir: Path) -> list[JobResult]:
    """Every job of the sweep, from its job dir's ``job.json`` and its run in the store."""
    job_dirs = {
        int(path.parent.parent.name): path.parent.parent
        for path in sweep_dir.glob("*/.hydra/overrides.yaml")
        if path.parent.parent.name.isdigit()
    }
    records = {num: read_job(job_dir) for num, job_dir in job_dirs.items()}
    run_ids = [r["run_id"] for r in records.values() if r.get("run_id")]
    runs = {run.info.run_id: run for run in find_runs(client, experiment_id, run_ids)}
    results = []
    for num, job_dir in sorted(job_dirs.items()):
        record = records[num]
        run = runs.get(record.get("run_id", ""))
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = " ".join(yaml.safe_load(overrides_file.read_text()) or [])
        if run is None:
            reason = record.get("reason") or f"no run: see the log in {job_dir}"
            results.append(JobResult(num, overrides, "NO RUN", reason, None))
            continue
        reason = record.get("reason") or run.data.tags.get(FAILURE_REASON, "")
        results.append(JobResult(num, overrides, run.info.status, reason, run))
    return results


def find_runs(
    client: MlflowClient,
    experiment_id: str,
    run_ids: list[str],
    order_by: list[str] | None = None,
    max_results: int | None = None,
) -> list[Run]:
    """The runs ``run_ids`` of the experiment, in the store's ``order_by`` order."""
    if not run_ids:
        return []
    quoted = ", ".join(f"'{run_id}'" for run_id in run_ids)
    return client.search_runs(
        [experiment_id],
        filter_string=f"attributes.run_id IN ({quoted})",
        order_by=order_by,
        max_results=max_results or len(run_ids),
    )


def best(
    client: MlflowClient, experiment_id: str, results: list[JobResult], metric: str, direction: str
) -> JobResult | None:
    """The finished job whose run has the lowest (minimize) or highest (maximize) ``metric``."""
    finished = {r.run_id: r for r in results if r.status == "FINISHED"}
    order = "ASC" if direction == "minimize" else "DESC"
    found = find_runs(
        client, experiment_id, list(finished), [f"metrics.`{metric}` {order}"], max_results=1
    )
    return finished[found[0].info.run_id] if found else None
