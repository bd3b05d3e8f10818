"""Per-epoch metrics, buffered and written every few seconds: straight into the store's tables
where its schema is known (``pipeline.tracking.store.bulk``), else with ``log_batch``."""

from __future__ import annotations

import time

from mlflow.tracking import MlflowClient

from pipeline.runtime import failpoints
from pipeline.tags import PROGRESS_EPOCH
from pipeline.tracking.store.bulk import Row, write_metrics

# Values a transaction: the default run's 2002 and its summary are one; a longer flush is several,
# so that a sqlite store's write lock is held ~25 ms at a time and parallel jobs' flushes
# interleave. (Through a tracking server each is requests of 1000 values, MLflow's limit.)
CHUNK = 2500


class MetricBuffer:
    """Collects per-step metrics and writes them (``write_metrics``) every ``flush_every_s``.

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

        Called for every epoch, so it stays cheap: the rows to write are made at flush time.
        """
        if timestamp_ms is None:
            timestamp_ms = int(time.time() * 1000)
        self.pending.append((step, timestamp_ms, values))
        self.last_epoch = step
        if time.monotonic() >= self.next_flush:
            self.flush()

    def log_many(self, epochs: list[tuple[int, int, dict[str, float]]]) -> None:
        """``log`` of several steps at once, (step, time in ms, values) each, without a flush."""
        if epochs:
            self.pending.extend(epochs)
            self.last_epoch = epochs[-1][0]

    def log_summary(self, values: dict[str, float]) -> None:
        """Metrics of the trained model (``final_cost``, ``test_accuracy``, ...), at step 0."""
        self.pending.append((0, int(time.time() * 1000), values))

    def drain(self) -> tuple[list[Row], dict[str, str]]:
        """What ``flush`` would write, taken out of the buffer: the rows and the run's tags."""
        run_id, recorded = self.run_id, self.recorded
        rows: list[Row] = [
            (run_id, key, value, timestamp, step)
            for step, timestamp, values in self.pending
            for key, value in values.items()
            if not recorded or step > recorded.get(key, -1)  # (a new run: nothing recorded)
        ]
        self.pending = []
        return rows, {} if self.last_epoch is None else {PROGRESS_EPOCH: str(self.last_epoch)}

    def flush(self) -> None:
        """Write what is held in chunks of ``CHUNK`` (step order), a transaction each; the last
        one also says how far the run got (the ``progress.epoch`` tag): a store never has that
        tag ahead of its metrics."""
        if self.pending:
            rows: list[Row] = [
                (self.run_id, key, value, timestamp, step)
                for step, timestamp, values in self.pending
                for key, value in values.items()
                if step > self.recorded.get(key, -1)
            ]
            chunks = [rows[start : start + CHUNK] for start in range(0, len(rows), CHUNK)] or [[]]
            uri = self.client.tracking_uri
            for chunk in chunks[:-1]:
                write_metrics(uri, chunk, client=self.client)
                failpoints.reached("flush")  # a chunk written, the next not: half a flush
            done = {} if self.last_epoch is None else {PROGRESS_EPOCH: str(self.last_epoch)}
            write_metrics(uri, chunks[-1], {self.run_id: done} if done else None, self.client)
            self.pending = []
        self.next_flush = time.monotonic() + self.flush_every_s


# A sqlite store's write lock is then held ~7 s at a time (other writers wait up to
# BUSY_TIMEOUT_S). Smaller transactions cost more in all: 2,002,000 rows of 1000 runs took
# 15.5 s in transactions of 250,000 and 13.5 s in ones of 1,000,000 (each commit rewrites the
# index pages that the transaction before it wrote already).
ROWS_PER_WRITE = 1_000_000


def flush_all(buffers: list[MetricBuffer]) -> None:
    """Flush many runs' buffers (a batched group) in a few transactions: runs whole, each with
    its ``progress.epoch`` tag, ``ROWS_PER_WRITE`` rows or so a transaction."""
    if not buffers:
        return
    client, rows, tags = buffers[0].client, [], {}
    for buffer in buffers:
        run_rows, run_tags = buffer.drain()
        rows += run_rows
        if run_tags:
            tags[buffer.run_id] = run_tags
        if len(rows) >= ROWS_PER_WRITE:
            write_metrics(client.tracking_uri, rows, tags, client)
            rows, tags = [], {}
    if rows or tags:
        write_metrics(client.tracking_uri, rows, tags, client)
