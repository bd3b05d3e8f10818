"""Rerun a past run and say whether it reproduced: ``python -m pipeline.rerun RUN_ID [overrides]``.

The recorded, fully resolved config (the run's ``config.yaml``) becomes explicit overrides of a
new ``python -m pipeline.train`` run in the same experiment, tagged ``rerun_of=RUN_ID``. Then
the two ``cost`` histories and the recorded environment facts are compared. Exit status: 0 when
reproduced (or when overrides were given: a difference is then expected), 1 when not, 2 on bad
input.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipeline import cli
from pipeline.errors import PipelineError
from pipeline.runtime.job import GROUPS, is_run_setting, override_key
from pipeline.tracking import lookup
from pipeline.tracking.differences import compare_costs, fact_differences
from pipeline.tracking.records import flatten_dict
from pipeline.tracking.store import fetch_run, open_store, resolve_tracking_uri

EXAMPLE = "python -m pipeline.rerun 2b18c0ffee8156 optim.lr=0.05"
# Runs recorded before configs built objects from `_target_` named their group choice in the
# config itself (data.name: iris); today's runs record the choices as params (data: iris).
LEGACY_CHOICE_KEYS = {group: f"{group}.name" for group in GROUPS}


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


def recorded_config(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """The resolved config the run logged as ``config.yaml``."""
    config = lookup.recorded_config(client, run_id)
    if config is None:
        raise PipelineError(
            f"Run {run_id} has no recorded config.yaml: it was not made by "
            "`python -m pipeline.train`. Fix: rerun a run that was"
        )
    return config


def recorded_overrides(run: Run, config: dict[str, Any]) -> list[str]:
    """The run's group choices and every recorded value, as Hydra overrides."""
    values = flatten_dict(config)
    choices = {group: run.data.params[group] for group in GROUPS if group in run.data.params}
    for group, legacy_key in LEGACY_CHOICE_KEYS.items():
        legacy = values.pop(legacy_key, None)
        if group not in choices and legacy is not None:
            choices[group] = legacy
    return [f"{group}={choice}" for group, choice in choices.items()] + [
        f"{key}={hydra_value(value)}" for key, value in values.items() if not is_run_setting(key)
    ]


def launch(
    recorded: list[str], overrides: list[str], uri: str, experiment: str, original: Run
) -> None:
    """Train the recorded config (plus ``overrides``) as a new run, in a child process."""
    overridden = {override_key(o) for o in overrides}
    explicit = [o for o in recorded if override_key(o) not in overridden]
    tracking = [  # the store comes through the environment: no password on a command line
        f"tracking.experiment={hydra_value(experiment)}",
        f"tracking.run_name={hydra_value(original.info.run_name + ' (rerun)')}",
        f"+tracking.tags.rerun_of={original.info.run_id}",
    ]
    command = [sys.executable, "-m", "pipeline.train", *explicit, *overrides, *tracking]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    if subprocess.run(command, env=env).returncode != 0:
        raise PipelineError(f"The rerun of {original.info.run_id} failed (see above).")


def hydra_value(value: Any) -> str:
    """``value`` in Hydra's override syntax (strings quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)


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


if __name__ == "__main__":
    cli.run(main)
