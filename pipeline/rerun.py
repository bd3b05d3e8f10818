"""Rerun a past run and say whether it reproduced: ``python -m pipeline.rerun RUN_ID [overrides]``.

The recorded, fully resolved config (the run's ``config.yaml``) becomes explicit overrides of a
new ``python -m pipeline.train`` run in the same experiment, tagged ``rerun_of=RUN_ID``. Then
the two ``cost`` histories and the recorded environment facts are compared. Exit status: 0 when
reproduced (or when overrides were given: a difference is then expected), 1 when not, 2 on bad
input.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipeline import cli
from pipeline.errors import PipelineError
from pipeline.tracking.recorded import (
    hydra_value,
    merge,
    recorded_config,
    recorded_overrides,
    train_again,
)
from pipeline.tracking.store import fetch_run, open_store, resolve_tracking_uri

EXAMPLE = "python -m pipeline.rerun 2b18c0ffee8156 optim.lr=0.05"
FACT_PREFIXES = ("code.", "env.", "data.digest")


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("rerun", __doc__, EXAMPLE)
    parser.add_argument("run_id", metavar="RUN_ID")
    parser.add_argument("overrides", metavar="OVERRIDE", nargs="*", help="Hydra overrides")
    args = parser.parse_args(argv)
    store_uris = [o.split("=", 1)[1] for o in args.overrides if o.startswith("tracking.uri=")]
    overrides = [o for o in args.overrides if not o.startswith("tracking.uri=")]
    uri = resolve_tracking_uri(store_uris[-1] if store_uris else args.tracking_uri)
    client = open_store(uri)
    original = fetch_run(client, args.run_id)
    config = recorded_config(client, args.run_id)
    experiment = client.get_experiment(original.info.experiment_id).name
    launch(recorded_overrides(original, config), overrides, uri, experiment, original)
    rerun = find_rerun(client, original)
    report = compare_costs(client, original, rerun)
    print(f"rerun {rerun.info.run_id} of {args.run_id}: {report}")
    for line in fact_differences(original, rerun):
        print(f"  differs: {line}")
    if overrides:
        print(f"  (overrides {' '.join(overrides)} changed the config: a difference is expected)")
        return 0
    return 0 if report.reproduced else 1


def launch(
    recorded: list[str], overrides: list[str], uri: str, experiment: str, original: Run
) -> None:
    """Train the recorded config (plus ``overrides``) as a new run, in a child process."""
    tracking = [
        f"tracking.experiment={hydra_value(experiment)}",
        f"tracking.run_name={hydra_value(original.info.run_name + ' (rerun)')}",
        f"+tracking.tags.rerun_of={original.info.run_id}",
    ]
    if train_again([*merge(recorded, overrides), *tracking], uri) != 0:
        raise PipelineError(f"The rerun of {original.info.run_id} failed (see above).")


def find_rerun(client: MlflowClient, original: Run) -> Run:
    found = client.search_runs(
        [original.info.experiment_id],
        filter_string=f"tags.rerun_of = '{original.info.run_id}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        raise PipelineError(f"The rerun of {original.info.run_id} left no run in the store.")
    return found[0]


@dataclass(frozen=True)
class CostComparison:
    identical: int
    total: int
    first_difference: tuple[int, float, float] | None  # step, original, rerun
    largest_difference: float

    @property
    def reproduced(self) -> bool:
        return self.first_difference is None

    def __str__(self) -> str:
        if self.reproduced:
            return f"reproduced: {self.identical}/{self.total} cost values identical"
        step, was, now = self.first_difference
        return (
            f"NOT reproduced: {self.identical}/{self.total} cost values identical; first "
            f"difference at step {step} ({was!r} -> {now!r}); largest absolute difference "
            f"{self.largest_difference:.3g}"
        )


def compare_costs(client: MlflowClient, original: Run, rerun: Run) -> CostComparison:
    """Compare the full per-epoch ``cost`` histories, value by value."""
    was = _history(client, original.info.run_id)
    now = _history(client, rerun.info.run_id)
    steps = sorted(was.keys() | now.keys())
    nan = float("nan")
    differing = [s for s in steps if was.get(s, nan) != now.get(s, nan)]
    largest = max((abs(was[s] - now[s]) for s in differing if s in was and s in now), default=0.0)
    first = differing[0] if differing else None
    return CostComparison(
        identical=len(steps) - len(differing),
        total=len(steps),
        first_difference=None if first is None else (first, was.get(first), now.get(first)),
        largest_difference=largest if differing else 0.0,
    )


def _history(client: MlflowClient, run_id: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, "cost")}


def fact_differences(original: Run, rerun: Run) -> list[str]:
    """Recorded environment facts (code, versions, machine, data) that differ."""
    was = {k: v for k, v in original.data.tags.items() if k.startswith(FACT_PREFIXES)}
    now = {k: v for k, v in rerun.data.tags.items() if k.startswith(FACT_PREFIXES)}
    return [
        f"{key}: {was.get(key, '(not recorded)')} -> {now.get(key, '(not recorded)')}"
        for key in sorted(was.keys() | now.keys())
        if was.get(key) != now.get(key)
    ]


if __name__ == "__main__":
    cli.run(main)
