"""The sweep's ``cost_curves.png``: every job's training cost, epoch by epoch, in one plot."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from pipeline.tracking.store import bulk
from pipeline.tracking.sweep.results import JobResult

LEGEND_MAX = 30  # more jobs than this: no legend (it would cover the plot)


def log_cost_curves(client: MlflowClient, parent_id: str, results: list[JobResult]) -> None:
    """Plot the ``cost`` history of every job that has a run, and log it to the parent."""
    from matplotlib.figure import Figure  # not pyplot: a notebook's backend stays as it is

    figure = Figure(figsize=(8, 5))
    axes = figure.subplots()
    histories = cost_histories(client, [result.run_id for result in results])
    for result in results:
        history = histories[result.run_id]
        axes.plot([step for step, _ in history], [value for _, value in history],
                  label=result.run.run_name)  # fmt: skip
    axes.set(xlabel="epoch", ylabel="cost", title="Training cost of every job", yscale="log")
    if len(results) <= LEGEND_MAX:
        axes.legend(fontsize="small")
    client.log_figure(parent_id, figure, "cost_curves.png")


def cost_histories(client: MlflowClient, run_ids: list[str]) -> dict[str, list[tuple[int, float]]]:
    """Each run's ``cost`` history (step, value): from the store's tables where ``bulk`` reads
    them (``bulk.read_histories``: no request through MLflow's client a run), else run by run."""
    if bulk.writes_directly(client.tracking_uri):
        return bulk.read_histories(client.tracking_uri, run_ids, "cost")
    return {
        run_id: sorted((m.step, m.value) for m in client.get_metric_history(run_id, "cost"))
        for run_id in run_ids
    }
