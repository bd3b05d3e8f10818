"""The sweep's ``cost_curves.png``: every job's training cost, epoch by epoch, in one plot."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from pipeline.tracking.sweep.results import JobResult


def log_cost_curves(client: MlflowClient, parent_id: str, results: list[JobResult]) -> None:
    """Plot the ``cost`` history of every job that has a run, and log it to the parent."""
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
