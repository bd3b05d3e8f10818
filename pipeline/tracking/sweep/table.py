"""The sweep's summary table: one row per job, as the console and ``summary.txt`` show it."""

from __future__ import annotations

from pipeline.runtime.text_table import format_table
from pipeline.tracking.sweep.results import JobResult


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
    return "\n".join(format_table(rows))
