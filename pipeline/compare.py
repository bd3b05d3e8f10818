"""Compare runs in one table: ``python -m pipeline.compare [TARGET]``.

TARGET is a sweep's parent run id, an experiment name, or nothing (the latest sweep in the
default experiment). One row per run: its name, status, the params that vary across the rows
(``--all``: every param), the key metrics and its id, best first by the sweep's objective
(``--sort METRIC``: ascending, ``--desc``: descending). ``--format md|csv|json`` for reports and
scripts. The plain table fits the terminal's width (long values shortened with an ellipsis);
piped to a file or a program, it is printed whole.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline import cli
from pipeline.errors import PipelineError
from pipeline.runtime.text_table import fit_widths, format_table, shorten, terminal_width
from pipeline.tags import SWEEP_METRIC

if TYPE_CHECKING:  # the store loads after the arguments are parsed: --help stays fast
    from pipeline.tracking.query.runs import Runs
    from pipeline.tracking.store.reads import RunRecord

EXAMPLE = "python -m pipeline.compare 2fba20b9b0664e --sort test_accuracy --desc"
# (a cross-validated run's folds' mean and std validation scores: columns where one has them)
KEY_METRICS = ("objective", "cv_mean_val_accuracy", "cv_std_val_accuracy", "final_cost",
               "final_accuracy", "test_cost", "test_accuracy")  # fmt: skip
FORMATS = ("text", "md", "csv", "json")
MISSING = "-"
MIN_WIDTH = 4  # a column is never shortened below this (the ellipsis included)
SHORT_TEXT = 12  # run names and params are shortened to this before the run id
SHORT_ID = 13  # 12 characters of a run id and the ellipsis
RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Table:
    """What is compared (a title), the columns (params and metrics named), one row per run."""

    title: str
    params: list[str]
    metrics: list[str]
    rows: list[dict[str, Any]]  # run, status, each param (str), each metric (float), run_id

    @property
    def columns(self) -> list[str]:
        return ["run", "status", *self.params, *self.metrics, "run_id"]


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("compare", __doc__, EXAMPLE)
    parser.add_argument(
        "target",
        metavar="TARGET",
        nargs="?",
        help="a sweep's parent run id, or an experiment name (default: the latest sweep)",
    )
    parser.add_argument("--all", action="store_true", help="every param, not only those that vary")
    parser.add_argument("--sort", metavar="METRIC", help="sort by METRIC (default: the objective)")
    parser.add_argument("--desc", action="store_true", help="sort in descending order")
    parser.add_argument("--format", choices=FORMATS, default="text", help="default: text")
    args = parser.parse_args(argv)

    from pipeline.tracking.query.runs import open_runs
    from pipeline.tracking.store.uri import resolve_tracking_uri

    store = open_runs(resolve_tracking_uri(args.tracking_uri))
    table = build_table(store, args.target, args.sort, args.desc, args.all)
    print(render(table, args.format, terminal_width()))
    return 0


def build_table(
    store: Runs, target: str | None, sort: str | None, desc: bool, all_params: bool
) -> Table:
    """The runs ``target`` names, ranked, with the columns worth showing."""
    from pipeline.tracking.query import lookup

    experiment_id, parent, what = select(store, target)
    run_filter = lookup.nested_filter(parent.run_id) if parent else lookup.experiment_filter()
    newest = store.search(experiment_id, run_filter, limit=1)
    if not newest:
        raise _error(f"No runs in {what}", "train some with `python -m pipeline.train -m ...`")
    tags = parent.tags if parent is not None else {}
    config = None if SWEEP_METRIC in tags else store.recorded_config(newest[0])
    objective = lookup.ranking(tags, config)
    metric = sort or objective.metric
    descending = desc or (sort is None and objective.descending)
    runs = store.search(experiment_id, run_filter, metric, descending)
    if not any(metric in run.metrics for run in runs):
        known = ", ".join(sorted({key for run in runs for key in run.metrics}))
        raise _error(f"No run in {what} has a metric {metric!r}", f"--sort one of {known}")
    order = "descending" if descending else "ascending"
    if sort is None and not desc:
        order = objective.direction
    title = f"{len(runs)} runs of {what}, by {metric} ({order})"
    params = param_columns(runs, all_params)
    metrics = [k for k in KEY_METRICS if any(k in run.metrics for run in runs)]
    if metric not in metrics:
        metrics.append(metric)
    return Table(title, params, metrics, [row(run, params, metrics) for run in runs])


def select(store: Runs, target: str | None) -> tuple[str, RunRecord | None, str]:
    """(experiment id, the sweep's parent run or None, a description) that ``target`` names."""
    from pipeline.tracking.query import lookup

    if target is None:
        from pipeline.config import compose_config

        name = compose_config().tracking.experiment
        experiment_id = store.experiment_id(name)
        found = []
        if experiment_id is not None:  # the sweep that started last
            found = store.search(experiment_id, lookup.sweeps_filter(), limit=1)
        if not found:
            raise _error(
                f"No sweep in experiment {name!r}",
                "run one with `python -m pipeline.train -m optim.lr=0.01,0.1`, or pass an "
                "experiment name or a sweep's parent run id",
            )
        return found[0].experiment_id, found[0], _sweep_name(found[0])
    experiment_id = store.experiment_id(target)
    if experiment_id is not None:
        return experiment_id, None, f"experiment {target!r}"
    if not RUN_ID.fullmatch(target):
        raise _error(
            f"No experiment {target!r} and no run with that id in the store",
            "pass a sweep's parent run id (its summary prints it) or an experiment name",
        )
    parent = store.run(target)
    if not store.search(parent.experiment_id, lookup.nested_filter(target), limit=1):
        raise _error(
            f"Run {target} is not a sweep's parent run (no runs are nested under it)",
            "pass the sweep's parent run id (its summary prints it) or an experiment name; "
            "`python -m pipeline.diff RUN_A RUN_B` compares two runs",
        )
    return parent.experiment_id, parent, _sweep_name(parent)


def _sweep_name(parent: RunRecord) -> str:
    return f"{parent.run_name!r} ({parent.run_id})"


def _error(what: str, fix: str) -> PipelineError:
    return PipelineError(f"{what}. Fix: {fix}")


def param_columns(runs: list[RunRecord], all_params: bool) -> list[str]:
    """The params whose values differ across ``runs`` (a missing param counts), or all."""
    keys = sorted({key for run in runs for key in run.params})
    if all_params:
        return keys
    return [k for k in keys if len({run.params.get(k) for run in runs}) > 1]


def row(run: RunRecord, params: list[str], metrics: list[str]) -> dict[str, Any]:
    return {
        "run": run.run_name,
        "status": run.status,
        **{key: run.params.get(key) for key in params},
        **{key: run.metrics.get(key) for key in metrics},
        "run_id": run.run_id,
    }


def render(table: Table, fmt: str, width: int | None) -> str:
    """The table in ``fmt``; a text table fits ``width`` (None: the whole table)."""
    if fmt == "json":
        return json.dumps([_json_row(r) for r in table.rows], indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(table.columns)
        writer.writerows([_csv_cell(r[c]) for c in table.columns] for r in table.rows)
        return out.getvalue().rstrip("\n")
    cells = [[_text_cell(r[c]) for c in table.columns] for r in table.rows]
    numeric = [c in table.metrics for c in table.columns]
    if fmt == "md":
        return markdown(table.columns, cells, numeric)
    title = table.title if width is None else shorten(table.title, width)
    return title + "\n" + text_table(table.columns, cells, numeric, width)


def _text_cell(value: Any) -> str:
    if value is None:
        return MISSING
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _json_row(values: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or infinity: null."""
    finite = lambda v: not isinstance(v, float) or math.isfinite(v)  # noqa: E731
    return {key: value if finite(value) else None for key, value in values.items()}


def markdown(header: list[str], cells: list[list[str]], numeric: list[bool]) -> str:
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    rule = ["---:" if n else "---" for n in numeric]
    lines = [header, rule, *cells]
    return "\n".join("| " + " | ".join(escape(c) for c in line) + " |" for line in lines)


def text_table(
    header: list[str], cells: list[list[str]], numeric: list[bool], width: int | None
) -> str:
    """Columns padded to one width each (numbers right-aligned) and, to fit ``width`` (None: no
    limit), shortened in steps: names and params to ``SHORT_TEXT`` and numeric headers to their
    values' width, then the run id (the last column) to ``SHORT_ID``, then anything to
    ``MIN_WIDTH``. Numbers keep their digits longest."""
    rows = [header, *cells]
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    if width is not None:
        values = [max(MIN_WIDTH, *map(len, column[1:])) for column in zip(*rows, strict=True)]
        soft = [min(n, values[i] if numeric[i] else SHORT_TEXT) for i, n in enumerate(widths)]
        steps = [
            [*soft[:-1], widths[-1]],  # the run id whole
            [*soft[:-1], min(widths[-1], SHORT_ID)],
            [MIN_WIDTH] * len(widths),
        ]
        widths = fit_widths(widths, steps, width)
    return "\n".join(format_table(rows, numeric, widths))


if __name__ == "__main__":
    cli.run(main)
