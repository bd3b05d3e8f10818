"""Predict with a logged model: ``python -m pipeline.predict MODEL INPUT [--output FILE]``.

MODEL is a run id or an MLflow model URI (``runs:/ID/classifier``, ``models:/NAME@ALIAS``).
INPUT is a CSV file, or a Parquet file (by its suffix: ``.parquet``, ``.pq``). Writes one row
per input row: the predicted label (the original class name) and each class's probability, as
CSV to ``--output`` or to stdout. Input columns are matched by the model's feature names, or by
position when the count matches.
"""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd

from pipeline import cli
from pipeline.errors import first_line

EXAMPLE = "python -m pipeline.predict 2b18c0ffee8156 new.csv --output predictions.csv"


def load_classifier(model: str, uri: str) -> Any:
    """The pyfunc classifier that ``model`` (a run id or a model URI) names, as MLflow loads it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline.errors import PipelineError
    from pipeline.tracking.store.access import fetch_run, open_store

    client = open_store(uri)  # a missing store or an unreachable server is one line
    if model.startswith(("models:/", "runs:/")) or "://" in model:
        source = model
    else:
        source = f"runs:/{fetch_run(client, model).info.run_id}/classifier"
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.pyfunc.load_model(source)
    except (MlflowException, OSError) as err:
        raise PipelineError(
            f"Cannot load a model from {source}: {first_line(err)}. "
            "Fix: use the run id of a finished run of `python -m pipeline.train`, "
            "or a model URI such as models:/softmax-regression@champion"
        ) from None


def predict(model: str, input_path: str, uri: str, delimiter: str, header: bool) -> pd.DataFrame:
    from pipeline.core.tables import read_features

    classifier = load_classifier(model, uri)
    feature_names = classifier.metadata.get_input_schema().input_names()
    features = read_features(input_path, feature_names, delimiter, header)
    probabilities = classifier.predict(features)
    predicted = probabilities.idxmax(axis=1).rename("label")
    return pd.concat([predicted, probabilities.add_prefix("prob_")], axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("predict", __doc__, EXAMPLE)
    parser.add_argument("model", metavar="MODEL", help="a run id, or runs:/... or models:/...")
    parser.add_argument(
        "input", metavar="INPUT", help="a CSV or Parquet (.parquet, .pq) file of feature columns"
    )
    parser.add_argument("--output", default=None, help="CSV file to write (default: stdout)")
    parser.add_argument("--delimiter", default=",", help="of a CSV input")
    parser.add_argument("--no-header", action="store_true", help="a CSV input has no header row")
    args = parser.parse_args(argv)

    from pipeline.tracking.store.access import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    table = predict(args.model, args.input, uri, args.delimiter, not args.no_header)
    table.to_csv(args.output or sys.stdout, index=False)
    if args.output:
        print(f"Wrote {len(table)} predictions to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run(main)
