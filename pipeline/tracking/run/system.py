"""System metrics (``tracking.system_metrics``): MLflow's own monitor, a thread that samples CPU,
memory, disk, network (and the GPU where ``nvidia-ml-py`` is installed) every
``tracking.system_metrics_every_s`` and logs them as ``system/*`` metrics.

Two additions to MLflow's monitor: it logs its last samples when stopped (MLflow drops them,
so a run shorter than the interval had no ``system/`` metric at all), and a batched group has
one monitor whose samples go to each of its runs (the jobs share one process: what it uses is
what each of them used).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking import MlflowClient

from pipeline.tracking.store import bulk

PREFIX = "system/"


class SystemMetrics(SystemMetricsMonitor):
    """MLflow's monitor of one run, which logs what it sampled since its last write on
    ``finish``."""

    def finish(self) -> None:
        started = self._process is not None
        super().finish()
        if started:
            self.collect_metrics()  # the state at the end, with the samples not yet logged
            self.publish_metrics(self.aggregate_metrics())
            self.mlflow_logger.flush()


class GroupSystemMetrics(SystemMetrics):
    """One monitor for the runs of a batched group: each sample is written to every run, in
    one write (``bulk.write_metrics``)."""

    def __init__(
        self, client: MlflowClient, run_ids: Sequence[str], every_s: float, resumed: bool
    ) -> None:
        super().__init__(
            run_ids[0], every_s, resume_logging=resumed, tracking_uri=client.tracking_uri
        )
        self.client, self.run_ids = client, list(run_ids)

    def publish_metrics(self, metrics: dict[str, float]) -> None:
        ms, step = int(time.time() * 1000), self._logging_step
        rows = [
            (run_id, f"{PREFIX}{key}", value, ms, step)
            for run_id in self.run_ids
            for key, value in metrics.items()
        ]
        bulk.write_metrics(self.client.tracking_uri, rows, client=self.client)
        self._logging_step += 1
        for monitor in self.monitors:
            monitor.clear_metrics()


def monitor(
    client: MlflowClient, run_ids: Sequence[str], every_s: float, resumed: bool
) -> SystemMetrics:
    """A started monitor of the runs ``run_ids`` (one run alone, or a batched group's)."""
    if len(run_ids) == 1:
        watcher = SystemMetrics(
            run_ids[0], every_s, resume_logging=resumed, tracking_uri=client.tracking_uri
        )
    else:
        watcher = GroupSystemMetrics(client, run_ids, every_s, resumed)
    watcher.start()
    return watcher
