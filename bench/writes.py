"""One run's bookkeeping, old and new, interleaved in one process on one fresh sqlite store.

    OMP_NUM_THREADS=1 python bench/writes.py [--rounds 10]

Flush: the default run's 2002 per-epoch values (cost and accuracy, 1001 epochs) and the
``progress.epoch`` tag, written as ``MetricBuffer`` did before (``log_batch`` in requests of
1000) and as it does now (``write_metrics``: rows into MLflow's tables). Models: MLflow's
``log_model`` of ``model`` and ``classifier`` against ``ModelTemplate.log`` (prepared once).
Prints min/median/max milliseconds of each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
import torch
from common import summary
from mlflow.entities import Metric, RunTag
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from pipeline.tracking.run import models
from pipeline.tracking.run.metrics import MetricBuffer

EPOCHS = 1001


def history(start_ms: int) -> list[tuple[int, int, dict[str, float]]]:
    return [
        (e, start_ms + e, {"cost": 1.0 / (e + 1), "accuracy": e / EPOCHS}) for e in range(EPOCHS)
    ]


def flush_with_log_batch(client: MlflowClient, run_id: str) -> None:
    """The flush before: MLflow Metric objects, ``log_batch`` 1000 at a time, the tag last."""
    metrics = [Metric(k, v, t, s) for s, t, values in history(0) for k, v in values.items()]
    chunks = [metrics[start : start + 1000] for start in range(0, len(metrics), 1000)]
    for chunk in chunks[:-1]:
        client.log_batch(run_id, metrics=chunk)
    client.log_batch(run_id, metrics=chunks[-1], tags=[RunTag("progress.epoch", str(EPOCHS - 1))])


def flush_with_bulk(client: MlflowClient, run_id: str) -> None:
    buffer = MetricBuffer(client, run_id, flush_every_s=600)
    buffer.pending, buffer.last_epoch = history(0), EPOCHS - 1
    buffer.flush()


def log_with_mlflow(
    model: torch.nn.Module, example: torch.Tensor, classes: list[str], features: list[str]
) -> None:
    """``mlflow.pytorch.log_model`` and ``mlflow.pyfunc.log_model``, as models.py did per run."""
    with torch.no_grad():
        logits = model(example)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={models.np.__version__}"]
    table = pd.DataFrame(example.double().numpy(), columns=features)
    probabilities = pd.DataFrame(torch.softmax(logits, dim=1).numpy(), columns=classes)
    with tempfile.TemporaryDirectory() as tmp, models.requirements_as_given():
        logged = mlflow.pytorch.log_model(
            model, name="model", signature=infer_signature(example.numpy(), logits.numpy()),
            input_example=example.numpy(), pip_requirements=requirements,
            serialization_format="pickle", code_paths=[models.model_code(Path(tmp))],
        )  # fmt: skip
        names = Path(tmp, "names.json")
        names.write_text(json.dumps({"classes": classes, "features": features}))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*An input example was not provided")
            mlflow.pyfunc.log_model(
                name="classifier", python_model=str(models.CLASSIFIER_CODE),
                artifacts={"torch_model": logged.model_uri, "names": str(names)},
                signature=infer_signature(table, probabilities),
                pip_requirements=[*requirements, f"pandas=={pd.__version__}"],
            )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {}

    def timed(name: str, call: Callable[..., object], *arguments: object) -> None:
        start = time.perf_counter()
        call(*arguments)
        seconds.setdefault(name, []).append(time.perf_counter() - start)

    torch.manual_seed(0)
    model, example = torch.nn.Linear(4, 3), torch.randn(2, 4)
    classes, features = ["a", "b", "c"], ["w", "x", "y", "z"]
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(uri)
        experiment = client.create_experiment("writes", Path(tmp, "artifacts").as_uri())
        mlflow.set_tracking_uri(uri)
        template = models.ModelTemplate.prepare(model, example, classes, features)
        for _ in range(args.rounds):
            for name, flush in (("flush: log_batch", flush_with_log_batch),
                                ("flush: write_metrics", flush_with_bulk)):  # fmt: skip
                timed(name, flush, client, client.create_run(experiment).info.run_id)
            with mlflow.start_run(experiment_id=experiment):
                timed(
                    "models: mlflow log_model", log_with_mlflow, model, example, classes, features
                )
            run_id = client.create_run(experiment).info.run_id
            timed("models: template.log", template.log, client, run_id, model, experiment, {})
    print(f"one run's bookkeeping, {args.rounds} rounds, interleaved, sqlite")
    for name, values in seconds.items():
        print(summary(name, [s * 1000 for s in values], unit="ms"))


if __name__ == "__main__":
    main()
