"""Predict with a logged model: ``python -m pipeline.predict run_id=ID input=FILE [output=FILE]``.

Loads the run's ``classifier`` model (its standardization included) from MLflow and writes one
row per input row: the predicted label (the original class name) and each class's probability,
as CSV to ``output`` or to stdout. Optional: ``delimiter=,``, ``header=true``, ``tracking.uri=``.
"""

from __future__ import annotations

import sys

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from pipeline.config import PipelineError
from pipeline.csvfile import read_feature_csv
from pipeline.tracking import fetch_run, open_store, resolve_tracking_uri

REQUIRED = {"run_id", "input"}
OPTIONAL = {"output": None, "delimiter": ",", "header": "true", "tracking.uri": None}


def parse_args(argv: list[str]) -> dict[str, str | None]:
    """``key=value`` arguments, checked against the known keys."""
    args: dict[str, str | None] = dict(OPTIONAL)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in REQUIRED | OPTIONAL.keys():
            raise PipelineError(
                f"Unknown argument {arg!r}. Fix: use key=value with keys "
                f"{', '.join(sorted(REQUIRED | OPTIONAL.keys()))}"
            )
        args[key] = value
    missing = REQUIRED - args.keys()
    if missing:
        raise PipelineError(f"Missing {', '.join(sorted(missing))}. Fix: {__doc__.splitlines()[0]}")
    return args


def predict(args: dict[str, str | None]) -> pd.DataFrame:
    uri = resolve_tracking_uri(args["tracking.uri"])
    run = fetch_run(open_store(uri), args["run_id"])
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/classifier")
    except (MlflowException, OSError):
        raise PipelineError(
            f"Run {run.info.run_id} has no classifier model. "
            "Fix: use a run made by `python -m pipeline.train` that finished"
        ) from None
    feature_names = model.metadata.get_input_schema().input_names()
    header = str(args["header"]).lower() in ("true", "1", "yes")
    features = read_feature_csv(args["input"], feature_names, args["delimiter"], header)
    probabilities = model.predict(features)
    predicted = probabilities.idxmax(axis=1).rename("label")
    return pd.concat([predicted, probabilities.add_prefix("prob_")], axis=1)


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
        table = predict(args)
    except PipelineError as err:
        print(err, file=sys.stderr)
        return 2
    table.to_csv(args["output"] or sys.stdout, index=False)
    if args["output"]:
        print(f"Wrote {len(table)} predictions to {args['output']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
