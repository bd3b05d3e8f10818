"""What differs between two runs: params, metrics, provenance facts and ``cost`` histories.

``python -m pipeline.rerun`` reports the cost history and the facts of a run and its rerun;
``python -m pipeline.diff`` reports all four for any two runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipeline.tags import CODE, DATA_DIGEST, ENV

# The provenance tags a run records (pipeline.tracking.run.provenance): code, environment, data.
FACT_PREFIXES = (CODE, ENV, DATA_DIGEST)
NOT_RECORDED = "(not recorded)"


@dataclass(frozen=True)
class CostComparison:
    """Two ``cost`` histories, compared value by value."""

    identical: int
    total: int
    first_difference: tuple[int, float, float] | None  # step, first run's value, second's
    largest_difference: float

    @property
    def reproduced(self) -> bool:
        return self.first_difference is None

    def detail(self) -> str:
        """How many values are identical, where the first difference is and the largest one."""
        text = f"{self.identical}/{self.total} cost values identical"
        if self.first_difference is None:
            return text
        step, was, now = self.first_difference
        return (
            f"{text}; first difference at step {step} ({was!r} -> {now!r}); "
            f"largest absolute difference {self.largest_difference:.3g}"
        )

    def __str__(self) -> str:
        return ("reproduced: " if self.reproduced else "NOT reproduced: ") + self.detail()


def compare_costs(client: MlflowClient, first: Run, second: Run) -> CostComparison:
    """Compare the full per-epoch ``cost`` histories, value by value."""
    was = _history(client, first.info.run_id)
    now = _history(client, second.info.run_id)
    steps = sorted(was.keys() | now.keys())
    nan = float("nan")
    differing = [s for s in steps if was.get(s, nan) != now.get(s, nan)]
    largest = max((abs(was[s] - now[s]) for s in differing if s in was and s in now), default=0.0)
    first_step = differing[0] if differing else None
    return CostComparison(
        identical=len(steps) - len(differing),
        total=len(steps),
        first_difference=(
            None if first_step is None else (first_step, was.get(first_step), now.get(first_step))
        ),
        largest_difference=largest if differing else 0.0,
    )


def _history(client: MlflowClient, run_id: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, "cost")}


def changed(was: dict[str, str], now: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Keys whose values differ (a missing key reads as "(not recorded)"), sorted by key."""
    return {
        key: (was.get(key, NOT_RECORDED), now.get(key, NOT_RECORDED))
        for key in sorted(was.keys() | now.keys())
        if was.get(key) != now.get(key)
    }


def facts(run: Run) -> dict[str, str]:
    """The run's recorded provenance facts (code, versions, machine, data digest)."""
    return {k: v for k, v in run.data.tags.items() if k.startswith(FACT_PREFIXES)}


def fact_differences(first: Run, second: Run) -> list[str]:
    """Recorded environment facts (code, versions, machine, data) that differ."""
    return [f"{key}: {a} -> {b}" for key, (a, b) in changed(facts(first), facts(second)).items()]
