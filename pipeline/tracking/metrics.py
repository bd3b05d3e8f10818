"""Per-epoch metrics, buffered and written with ``log_batch`` every few seconds."""

from __future__ import annotations

import time

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient


class MetricBuffer:
    """Collects per-step metrics and writes them with ``log_batch``, every ``flush_every_s``."""

    def __init__(self, client: MlflowClient, run_id: str, flush_every_s: float) -> None:
        self.client = client
        self.run_id = run_id
        self.flush_every_s = flush_every_s
        self.pending: list[tuple[int, int, dict[str, float]]] = []  # (step, time in ms, values)
        self.next_flush = time.monotonic() + flush_every_s

    def log(self, step: int, values: dict[str, float], timestamp_ms: int | None = None) -> None:
        """Keep ``values`` of ``step`` (measured at ``timestamp_ms``, default now) to write later.

        Called for every epoch, so it stays cheap: MLflow's Metric objects are made at flush time.
        """
        if timestamp_ms is None:
            timestamp_ms = int(time.time() * 1000)
        self.pending.append((step, timestamp_ms, values))
        if time.monotonic() >= self.next_flush:
            self.flush()

    def log_summary(self, values: dict[str, float]) -> None:
        """Metrics of the trained model (``final_cost``, ``test_accuracy``, ...), at step 0."""
        self.pending.append((0, int(time.time() * 1000), values))

    def flush(self) -> None:
        if self.pending:
            metrics = [
                Metric(key, value, timestamp, step)
                for step, timestamp, values in self.pending
                for key, value in values.items()
            ]
            self.client.log_batch(self.run_id, metrics=metrics)
            self.pending = []
        self.next_flush = time.monotonic() + self.flush_every_s
