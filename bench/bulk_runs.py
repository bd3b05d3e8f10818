"""Opening and closing a sweep's runs: MLflow's client run by run against ``bulk.create_runs``
and ``bulk.terminate_runs``, interleaved, each side on a fresh copy of one migrated sqlite store.

    OMP_NUM_THREADS=1 python bench/bulk_runs.py [--runs 1000] [--rounds 2]

A run as a default job of a sweep has it: 25 tags (MLflow's context tags, the parent run,
provenance), the config's 21 params and one dataset input (the toy data's train split); ended
FINISHED. The client: ``create_run``, ``log_batch(params=)``, ``log_inputs``, ``set_terminated``
per run. Bulk: one ``create_runs`` and one ``terminate_runs`` for all. Prints min/median/max
seconds of each side, and per run.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
from common import summary
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from mlflow.tracking.fluent import _create_dataset_input

from pipeline.tracking.store import bulk
from pipeline.tracking.store.bulk import RunSpec


def jobs(experiment_id: str, parent: str, runs: int) -> list[RunSpec]:
    source = CodeDatasetSource({"source": "pipeline.core.data.toy"})
    train = mlflow.data.from_numpy(
        np.ones((8, 2)), targets=np.zeros(8), source=source, name="toy/train", digest="d" * 32
    )
    inputs = [_create_dataset_input(train, "training", None)]
    context = resolve_tags({"mlflow.parentRunId": parent})
    found = []
    for i in range(runs):
        lr, seed = 10.0 ** -(i % 10), i // 10
        tags = {**context, **{f"pipeline.tag{k}": f"value {k} of job {i}" for k in range(25)}}
        tags = dict(list(tags.items())[:25])
        params = {f"group.param{k}": str(k * lr) for k in range(19)}
        params |= {"optim.lr": str(lr), "seed": str(seed)}
        found.append(RunSpec(experiment_id, f"optim.lr={lr},seed={seed}", tags, params, inputs))
    return found


def with_client(client: MlflowClient, specs: list[RunSpec]) -> None:
    run_ids = []
    for spec in specs:
        run = client.create_run(spec.experiment_id, tags=dict(spec.tags), run_name=spec.run_name)
        run_id = run.info.run_id
        client.log_batch(run_id, params=[Param(k, v) for k, v in spec.params.items()])
        client.log_inputs(run_id, datasets=list(spec.inputs))
        run_ids.append(run_id)
    for run_id in run_ids:
        client.set_terminated(run_id, "FINISHED")


def in_bulk(uri: str, specs: list[RunSpec]) -> None:
    run_ids = bulk.create_runs(uri, specs)
    bulk.terminate_runs(uri, dict.fromkeys(run_ids, "FINISHED"))


def side(template: Path, name: str, runs: int) -> float:
    """One side on a fresh copy of ``template``: the seconds its runs took, checked written."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(template, Path(tmp, "mlflow.db"))
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(uri)
        experiment = client.create_experiment("sweep", Path(tmp, "artifacts").as_uri())
        parent = client.create_run(experiment, run_name="sweep").info.run_id
        specs = jobs(experiment, parent, runs)
        started = time.perf_counter()
        if name == "client":
            with_client(client, specs)
        else:
            in_bulk(uri, specs)
        seconds = time.perf_counter() - started
        found = client.search_runs([experiment], "attributes.status = 'FINISHED'", max_results=2000)
        assert len(found) == runs, (name, len(found))
        bulk.engine(uri).dispose()
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"client": [], "bulk": []}
    with tempfile.TemporaryDirectory() as tmp:
        MlflowClient(f"sqlite:///{tmp}/mlflow.db")  # a migrated store, copied for each side
        side(Path(tmp, "mlflow.db"), "bulk", 10)  # warm-up: imports, caches
        for r in range(args.rounds):
            for name in ("client", "bulk") if r % 2 == 0 else ("bulk", "client"):
                times[name].append(side(Path(tmp, "mlflow.db"), name, args.runs))
    for name, values in times.items():
        print(summary(f"{name}: {args.runs} runs created and ended", values))
        print(summary(f"{name}: a run", [v / args.runs * 1000 for v in values], unit=" ms"))


if __name__ == "__main__":
    main()
