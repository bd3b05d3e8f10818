"""Rerun a past run and say whether it reproduced: ``python -m pipeline.rerun RUN_ID [overrides]``.

The recorded, fully resolved config (the run's ``config.yaml``) becomes explicit overrides of a
new ``python -m pipeline.train`` run in the same experiment, tagged ``rerun_of=RUN_ID``. Then
the two ``cost`` histories and the recorded environment facts are compared; for a
cross-validated run, its model's (refit on the whole training part) and each fold's. Exit
status: 0 when reproduced (or when overrides were given: a difference is then expected), 1 when
not, 2 on bad input.
"""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipeline import cli
from pipeline.diff import cv_folds, fold_comparisons
from pipeline.errors import PipelineError
from pipeline.tags import RERUN_OF
from pipeline.tracking.query import lookup
from pipeline.tracking.query.differences import compare_costs, fact_differences
from pipeline.tracking.resume.relaunch import hydra_value, merge, recorded_overrides, train_again
from pipeline.tracking.run.files import recorded_config
from pipeline.tracking.store.access import fetch_run, open_store, resolve_tracking_uri

EXAMPLE = "python -m pipeline.rerun 2b18c0ffee8156 optim.lr=0.05"


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
    lookup.refuse_fold(original, "rerun")
    config = recorded_config(client, args.run_id)
    experiment = client.get_experiment(original.info.experiment_id).name
    launch(recorded_overrides(original, config), overrides, uri, experiment, original)
    rerun = find_rerun(client, original)
    report = compare_costs(client, original, rerun)
    folds = fold_comparisons(client, original, rerun)
    refit = " (its model refit on the whole training part)" if cv_folds(original) else ""
    print(f"rerun {rerun.info.run_id} of {args.run_id}{refit}: {report}")
    for label, comparison in folds:
        print(f"  {label}" if comparison is None else f"  {label}: {comparison}")
    reproduced = report.reproduced and all(c is not None and c.reproduced for _, c in folds)
    for line in fact_differences(original, rerun):
        print(f"  differs: {line}")
    if overrides:
        print(f"  (overrides {' '.join(overrides)} changed the config: a difference is expected)")
        return 0
    return 0 if reproduced else 1


def launch(
    recorded: list[str], overrides: list[str], uri: str, experiment: str, original: Run
) -> None:
    """Train the recorded config (plus ``overrides``) as a new run, in a child process."""
    tracking = [
        f"tracking.experiment={hydra_value(experiment)}",
        f"tracking.run_name={hydra_value(original.info.run_name + ' (rerun)')}",
        f"+tracking.tags.{RERUN_OF}={original.info.run_id}",
    ]
    if train_again([*merge(recorded, overrides), *tracking], uri) != 0:
        raise PipelineError(f"The rerun of {original.info.run_id} failed (see above).")


def find_rerun(client: MlflowClient, original: Run) -> Run:
    found = client.search_runs(
        [original.info.experiment_id],
        filter_string=f"tags.`{RERUN_OF}` = '{original.info.run_id}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        raise PipelineError(f"The rerun of {original.info.run_id} left no run in the store.")
    return found[0]


if __name__ == "__main__":
    cli.run(main)
