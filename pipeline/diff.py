"""What differs between two runs: ``python -m pipeline.diff RUN_A RUN_B``.

Prints the params that differ (A -> B), every metric both runs have with both values and the
difference B - A, the provenance facts that differ (code, environment, data digest), and how the
``cost`` histories compare: the first epoch where they differ and the largest difference. The
exit status is 0 whether or not they differ; 2 for a bad run id or store.

A cross-validated run (``cv.folds``) is marked as such: its ``objective`` and ``val_macro_f1``
are its folds' means, its ``cost`` history and ``test_*``/``final_*`` metrics its model refit on
the whole training part; a note says so when only one side is cross-validated, and two
cross-validated runs also have their folds' ``cost`` histories compared, fold by fold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import cli
from pipeline.runtime.text_table import format_table

if TYPE_CHECKING:  # MLflow loads after the arguments are parsed: --help stays fast
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from pipeline.tracking.query.differences import CostComparison

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
    lines += [f"  {line}" for line in cv_note(first, second)]
    differing_facts = changed(facts(first), facts(second))
    lines.append(f"facts: {len(differing_facts)} differ" if differing_facts else "facts: all equal")
    lines += [f"  {key}: {a} -> {b}" for key, (a, b) in differing_facts.items()]
    lines.append(f"cost history: {compare_costs(client, first, second).detail()}")
    lines += [f"  {line}" for line in fold_lines(client, first, second)]
    return lines


def describe(run: Run) -> str:
    folds = cv_folds(run)
    cv = f"; cross-validated: {folds} folds" if folds else ""
    return f"{run.info.run_id} {run.info.run_name!r} ({run.info.status}){cv}"


def cv_folds(run: Run) -> int | None:
    """The folds of a cross-validated configuration run (``cv.folds``); None: not one."""
    from pipeline.tags import CV_FOLD

    folds = run.data.params.get("cv.folds", "")
    return int(folds) if folds.isdigit() and CV_FOLD not in run.data.tags else None


def cv_note(first: Run, second: Run) -> list[str]:
    """A warning when one run is cross-validated and the other not: the same metric names
    then measure different things."""
    a, b = cv_folds(first), cv_folds(second)
    if (a is None) == (b is None):
        return []
    side, other, folds = ("A", "B", a) if a else ("B", "A", b)
    return [
        f"note: {side}'s objective and val_macro_f1 are the means of its {folds} folds' "
        f"validation metrics, {other}'s are one validation split's; {side}'s cost history and "
        f"test_*/final_* metrics are its model refit on the whole training part"
    ]


def fold_comparisons(
    client: MlflowClient, first: Run, second: Run
) -> list[tuple[str, CostComparison | None]]:
    """Fold by fold, how the ``cost`` histories of two cross-validated runs' folds compare:
    (what is compared, the comparison or None where there is nothing to compare); [] unless
    both runs are cross-validated."""
    from pipeline.tracking.query.differences import compare_costs
    from pipeline.tracking.query.lookup import fold_runs

    a, b = cv_folds(first), cv_folds(second)
    if a is None or b is None:
        return []
    if a != b:
        return [(f"folds: {a} -> {b}, not compared", None)]
    was, now = (fold_runs(client, r.info.experiment_id, r.info.run_id) for r in (first, second))
    found = []
    for fold in range(1, a + 1):
        if fold not in was or fold not in now:
            found.append((f"fold {fold}/{a}: missing in {'A' if fold not in was else 'B'}", None))
        else:
            found.append((f"fold {fold}/{a}", compare_costs(client, was[fold], now[fold])))
    return found


def fold_lines(client: MlflowClient, first: Run, second: Run) -> list[str]:
    """``fold_comparisons`` as ``diff`` prints them."""
    return [
        label if comparison is None else f"{label}: {comparison.detail()}"
        for label, comparison in fold_comparisons(client, first, second)
    ]


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
