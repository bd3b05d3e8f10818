"""A sweep's parent run: its jobs' runs nest under it; at the end, a summary and the best run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipeline.job import PARENT_RUN_FILE
from pipeline.redact import redact


@dataclass(frozen=True)
class JobResult:
    """One job of the sweep, as the store and the sweep dir know it."""

    num: int
    overrides: str
    status: str  # the run's status, or NO RUN when the job failed before training
    reason: str  # why it did not finish
    final_cost: float
    accuracy: float
    run_id: str
    run: Run | None


def start_parent(
    client: MlflowClient,
    experiment_id: str,
    sweep_dir: Path,
    overrides: list[str],
    launcher: str,
    sweeper: str,
) -> str:
    """Create the sweep's run and leave its id in the sweep dir, where every job finds it."""
    name = " ".join(["sweep", *overrides])
    if sweeper != "BasicSweeper":
        name += f" ({sweeper})"
    parent = client.create_run(
        experiment_id,
        run_name=redact(name),
        tags={
            "sweep.dir": str(sweep_dir.resolve()),
            "sweep.launcher": launcher,
            "sweep.sweeper": sweeper,
            "hydra.overrides": redact(" ".join(overrides)),
        },
    )
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / PARENT_RUN_FILE).write_text(parent.info.run_id)
    return parent.info.run_id


def collect(client: MlflowClient, parent: Run, sweep_dir: Path) -> list[JobResult]:
    """Every job of the sweep: its nested run, or the job dir of a job that left none."""
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        max_results=10_000,
    )
    results = [_from_run(run) for run in children]
    for overrides_file in sweep_dir.glob("*/.hydra/overrides.yaml"):
        job_dir = overrides_file.parent.parent
        if job_dir.name.isdigit() and int(job_dir.name) not in {r.num for r in results}:
            results.append(_without_run(int(job_dir.name), job_dir, overrides_file))
    return sorted(results, key=lambda r: r.num)


def _without_run(num: int, job_dir: Path, overrides_file: Path) -> JobResult:
    """A job that failed before its run existed: the reason is the error in its log."""
    errors = [
        line.split("][ERROR] - ", 1)[1]
        for log in job_dir.glob("*.log")
        for line in log.read_text().splitlines()
        if "][ERROR] - " in line
    ]
    reason = errors[-1] if errors else f"no run: see the log in {job_dir}"
    overrides = " ".join(yaml.safe_load(overrides_file.read_text()) or [])
    return JobResult(num, overrides, "NO RUN", reason, math.nan, math.nan, "", None)


def _from_run(found: Run) -> JobResult:
    metrics = found.data.metrics
    accuracy = metrics.get("test_accuracy", metrics.get("final_accuracy", math.nan))
    return JobResult(
        int(found.data.tags.get("hydra.job_num", -1)),
        found.data.tags.get("hydra.overrides", ""),
        found.info.status,
        found.data.tags.get("failure_reason", ""),
        metrics.get("final_cost", math.nan),
        accuracy,
        found.info.run_id,
        found,
    )


def best(results: list[JobResult], metric: str, mode: str) -> JobResult | None:
    """The finished job with the lowest (mode=min) or highest (max) ``metric``."""
    scored = [r for r in results if r.status == "FINISHED" and metric in r.run.data.metrics]
    if not scored:
        return None
    pick = min if mode == "min" else max
    return pick(scored, key=lambda r: r.run.data.metrics[metric])


def table(results: list[JobResult]) -> str:
    """A plain-text table, one row per job."""
    rows = [("job", "overrides", "status", "final_cost", "accuracy", "run_id", "reason")]
    rows += [
        (
            str(r.num),
            r.overrides,
            r.status,
            f"{r.final_cost:.6f}",
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
    parent: Run,
    results: list[JobResult],
    best_result: JobResult | None,
    metric: str,
) -> None:
    """Log the table, a PNG of every cost curve, and the best run, to the parent run."""
    parent_id = parent.info.run_id
    client.log_text(parent_id, table(results) + "\n", "summary.txt")
    _log_cost_curves(client, parent_id, [r for r in results if r.run is not None])
    finished = sum(r.status == "FINISHED" for r in results)
    client.log_metric(parent_id, "jobs_finished", finished)
    client.log_metric(parent_id, "jobs_failed", len(results) - finished)
    if best_result is not None:
        client.set_tag(parent_id, "best_run_id", best_result.run_id)
        client.set_tag(parent_id, "best_run_name", best_result.run.info.run_name)
        client.log_metric(parent_id, f"best_{metric}", best_result.run.data.metrics[metric])
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
