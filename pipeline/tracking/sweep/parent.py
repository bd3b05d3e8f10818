"""A sweep's parent run: its jobs' runs nest under it; at the end, a summary and the best run.

The sweep dir holds what the jobs and the summary share: ``sweep.json`` (the parent run, the
swept keys and, at the end, the outcome) and, in each job dir, ``job.json`` (the job's run and
how it ended).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow.entities import Run, RunTag
from mlflow.tracking import MlflowClient

from pipeline.runtime.job import SWEEP_FILE, read_job
from pipeline.tracking.resume.identity import SWEEP_KEY_TAG, sweep_key
from pipeline.tracking.store.redact import redact


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
        "sweep.dir": str(sweep_dir.resolve()),
        "sweep.launcher": launcher,
        "sweep.sweeper": sweeper,
        "sweep.metric": objective[0],
        "sweep.direction": objective[1],
        "hydra.overrides": redact(" ".join(overrides)),
        SWEEP_KEY_TAG: key,
    }
    earlier = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{SWEEP_KEY_TAG}` = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if resume and earlier:
        parent_id = earlier[0].info.run_id
        client.update_run(parent_id, status="RUNNING")
        client.log_batch(parent_id, tags=[RunTag(k, v) for k, v in tags.items()])
    else:
        name = " ".join(["sweep", *overrides])
        if sweeper != "BasicSweeper":
            name += f" ({sweeper})"
        parent_id = client.create_run(experiment_id, run_name=redact(name), tags=tags).info.run_id
    write_sweep_file(sweep_dir, parent_run_id=parent_id, swept=swept)
    return parent_id


def write_sweep_file(sweep_dir: Path, **facts: object) -> None:
    """Add ``facts`` to the sweep dir's ``sweep.json``."""
    path = sweep_dir / SWEEP_FILE
    known = json.loads(path.read_text()) if path.exists() else {}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**known, **facts}))


def read_sweep_file(sweep_dir: Path) -> dict:
    path = sweep_dir / SWEEP_FILE
    return json.loads(path.read_text()) if path.exists() else {}


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
        reason = record.get("reason") or run.data.tags.get("failure_reason", "")
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


def table(results: list[JobResult]) -> str:
    """A plain-text table, one row per job."""
    rows = [("job", "overrides", "status", "final_cost", "accuracy", "run_id", "reason")]
    rows += [
        (
            str(r.num),
            r.overrides,
            r.status,
            f"{r.metric('final_cost'):.6f}",
            f"{r.accuracy:.4f}",
            r.run_id,
            r.reason,
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def log_summary(
    client: MlflowClient,
    parent_id: str,
    results: list[JobResult],
    best_result: JobResult | None,
    metric: str,
) -> None:
    """Log the table, a PNG of every cost curve, and the best run, to the parent run."""
    client.log_text(parent_id, table(results) + "\n", "summary.txt")
    _log_cost_curves(client, parent_id, [r for r in results if r.run is not None])
    finished = sum(r.status == "FINISHED" for r in results)
    client.log_metric(parent_id, "jobs_finished", finished)
    client.log_metric(parent_id, "jobs_failed", len(results) - finished)
    if best_result is not None:
        client.set_tag(parent_id, "best_run_id", best_result.run_id)
        client.set_tag(parent_id, "best_run_name", best_result.run.info.run_name)
        client.log_metric(parent_id, f"best_{metric}", best_result.metric(metric))
        for key, value in best_result.run.data.params.items():
            client.log_param(parent_id, f"best.{key}", value)


def _log_cost_curves(client: MlflowClient, parent_id: str, results: list[JobResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for result in results:
        history = sorted(client.get_metric_history(result.run_id, "cost"), key=lambda m: m.step)
        axes.plot(
            [m.step for m in history], [m.value for m in history], label=result.run.info.run_name
        )
    axes.set(xlabel="epoch", ylabel="cost", title="Training cost of every job", yscale="log")
    axes.legend(fontsize="small")
    client.log_figure(parent_id, figure, "cost_curves.png")
    plt.close(figure)
