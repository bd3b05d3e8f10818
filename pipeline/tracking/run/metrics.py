"""Per-epoch metrics, buffered and written with ``log_batch`` every few seconds."""

from __future__ import annotations

import time

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from pipeline.runtime import failpoints
from pipeline.tags import PROGRESS_EPOCH

CHUNK = 1000  # metrics per log_batch call: MLflow's limit, and one transaction each


class MetricBuffer:
    """Collects per-step metrics and writes them with ``log_batch``, every ``flush_every_s``.

    ``recorded`` maps a metric to the last step the run already has (a resumed run): values of
    those steps are not written again, so every step keeps exactly one value.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        flush_every_s: float,
        recorded: dict[str, int] | None = None,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.flush_every_s = flush_every_s
        self.recorded = recorded or {}
        self.pending: list[tuple[int, int, dict[str, float]]] = []  # (step, time in ms, values)
        self.last_epoch: int | None = None  # the last step ``log`` was given
        self.next_flush = time.monotonic() + flush_every_s

    def log(self, step: int, values: dict[str, float], timestamp_ms: int | None = None) -> None:
        """Keep ``values`` of ``step`` (measured at ``timestamp_ms``, default now) to write later.

        Called for every epoch, so it stays cheap: MLflow's Metric objects are made at flush time.
        """
        if timestamp_ms is None:
            timestamp_ms = int(time.time() * 1000)
        self.pending.append((step, timestamp_ms, values))
        self.last_epoch = step
        if time.monotonic() >= self.next_flush:
            self.flush()

    def log_summary(self, values: dict[str, float]) -> None:
        """Metrics of the trained model (``final_cost``, ``test_accuracy``, ...), at step 0."""
        self.pending.append((0, int(time.time() * 1000), values))

    def flush(self) -> None:
        """Write what is held in chunks of ``CHUNK`` (step order); the last one also says how far
        the run got (the ``progress.epoch`` tag)."""
        if self.pending:
            metrics = [
                Metric(key, value, timestamp, step)
                for step, timestamp, values in self.pending
                for key, value in values.items()
                if step > self.recorded.get(key, -1)
            ]
            chunks = [metrics[start : start + CHUNK] for start in range(0, len(metrics), CHUNK)]
            for chunk in chunks[:-1]:
                self.client.log_batch(self.run_id, metrics=chunk)
                failpoints.reached("flush")  # a chunk written, the next not: half a flush
            done = [] if self.last_epoch is None else [RunTag(PROGRESS_EPOCH, str(self.last_epoch))]
            self.client.log_batch(self.run_id, metrics=chunks[-1] if chunks else [], tags=done)
            self.pending = []
        self.next_flush = time.monotonic() + self.flush_every_s
