"""What differs between two runs: ``python -m pipeline.diff RUN_A RUN_B``.

Prints the params that differ (A -> B), every metric both runs have with both values and the
difference B - A, the provenance facts that differ (code, environment, data digest), and how the
``cost`` histories compare: the first epoch where they differ and the largest difference. The
exit status is 0 whether or not they differ; 2 for a bad run id or store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import cli
from pipeline.runtime.text_table import format_table

if TYPE_CHECKING:  # MLflow loads after the arguments are parsed: --help stays fast
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

EXAMPLE = "python -m pipeline.diff 2b18c0ffee8156 d8f26bebfa4644"


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("diff", __doc__, EXAMPLE)
    parser.add_argument("run_a", metavar="RUN_A", help="a run id: the old side")
    parser.add_argument("run_b", metavar="RUN_B", help="a run id: the new side")
    args = parser.parse_args(argv)

    from pipeline.tracking.store.access import fetch_run, open_store, resolve_tracking_uri

    client = open_store(resolve_tracking_uri(args.tracking_uri))
    first, second = fetch_run(client, args.run_a), fetch_run(client, args.run_b)
    print("\n".join(report(client, first, second)))
    return 0


def report(client: MlflowClient, first: Run, second: Run) -> list[str]:
    """The lines ``diff`` prints for runs ``first`` (A) and ``second`` (B)."""
    from pipeline.tracking.query.differences import changed, compare_costs, facts

    lines = [f"A: {describe(first)}", f"B: {describe(second)}"]
    params = changed(first.data.params, second.data.params)
    lines.append(f"params: {len(params)} differ" if params else "params: all equal")
    lines += [f"  {key}: {a} -> {b}" for key, (a, b) in params.items()]
    lines += metric_lines(first.data.metrics, second.data.metrics)
    differing_facts = changed(facts(first), facts(second))
    lines.append(f"facts: {len(differing_facts)} differ" if differing_facts else "facts: all equal")
    lines += [f"  {key}: {a} -> {b}" for key, (a, b) in differing_facts.items()]
    lines.append(f"cost history: {compare_costs(client, first, second).detail()}")
    return lines


def describe(run: Run) -> str:
    return f"{run.info.run_id} {run.info.run_name!r} ({run.info.status})"


def metric_lines(first: dict[str, float], second: dict[str, float]) -> list[str]:
    """Every shared metric: A, B and B - A in aligned columns; then those only one run has."""
    shared = sorted(first.keys() & second.keys())
    lines = [f"metrics: {len(shared)} in both"]
    if shared:
        rows = [("metric", "A", "B", "B - A")]
        rows += [(k, f"{first[k]:.6g}", f"{second[k]:.6g}", _delta(first[k], second[k]))
                 for k in shared]  # fmt: skip
        lines += [f"  {line}" for line in format_table(rows, right=[False, True, True, True])]
    for side, only in (("A", first.keys() - second.keys()), ("B", second.keys() - first.keys())):
        if only:
            lines.append(f"  only in {side}: {', '.join(sorted(only))}")
    return lines


def _delta(was: float, now: float) -> str:
    difference = now - was
    return "0" if difference == 0 else f"{difference:+.6g}"


if __name__ == "__main__":
    cli.run(main)
