"""``python -m pipeline.compare`` on a sweep of 1000 runs, on the sqlite store.

    python bench/compare.py [--runs 1000] [--rounds 5]

Builds, in a temp dir, a store with one real run (``data=iris epochs=10``) and a sweep parent
with ``--runs`` nested runs that carry that run's params (``optim.lr`` and ``seed`` varied),
tags, dataset inputs and final metrics, and 11 ``cost`` values each. Then times, interleaved,
the whole command (a process, ``--format csv``) and what it used to pay before reading a run
(a process that only imports MLflow and opens the store: a sqlite store is now read without
MLflow), and, in this process, reading and ranking the runs (``build_table``), straight from
the store's tables and, for reference, through MLflow's client.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import summary, timed


def build_store(cwd: Path, runs: int) -> str:
    """The parent run's id, after filling ``cwd``'s default store."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    timed([sys.executable, "-m", "pipeline.train", "data=iris", "epochs=10"], str(cwd))
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("softmax-regression").experiment_id
    (model,) = client.search_runs([experiment_id])
    tags = {"sweep.dir": str(cwd), "sweep.metric": "objective", "sweep.direction": "minimize"}
    parent = client.create_run(experiment_id, run_name="sweep bench", tags=tags)
    parent_id = parent.info.run_id
    now = int(time.time() * 1000)
    for n in range(runs):
        lr, seed = 10 ** -(1 + n % 4), n // 4
        params = {**model.data.params, "optim.lr": str(lr), "seed": str(seed)}
        tags = {**model.data.tags, "mlflow.parentRunId": parent_id, "hydra.job_num": str(n)}
        tags = {k: v for k, v in tags.items() if k != "mlflow.runName"}
        run = client.create_run(experiment_id, run_name=f"optim.lr={lr},seed={seed}")
        metrics = [Metric(k, v * (1 + n / runs), now, 0) for k, v in model.data.metrics.items()]
        metrics += [Metric("cost", 1.0 / (step + 1 + n), now, step) for step in range(11)]
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        client.log_inputs(run.info.run_id, datasets=model.inputs.dataset_inputs)
        client.set_terminated(run.info.run_id)
    client.set_terminated(parent_id)
    return parent_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        started = time.perf_counter()
        parent_id = build_store(cwd, args.runs)
        print(f"store with {args.runs} runs built in {time.perf_counter() - started:.0f} s")
        command = [sys.executable, "-m", "pipeline.compare", parent_id, "--format", "csv"]
        uri = f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}"
        floor = [sys.executable, "-c", "import pipeline.tracking.store.access as s; "
                 f"s.open_store({uri!r}).search_experiments()"]  # fmt: skip
        whole, floors = [], []
        for _ in range(args.rounds):
            whole.append(timed(command, str(cwd)))
            floors.append(timed(floor, str(cwd)))
        print(summary("import MLflow, open the store", floors))
        print(summary(f"compare {args.runs} runs, whole process", whole, note="(target < 3 s)"))

        from pipeline.compare import build_table, render
        from pipeline.tracking.query.runs import ClientRuns, DirectRuns, open_runs

        store = open_runs(uri)
        assert isinstance(store, DirectRuns), "the bench store is read directly"
        inside, client = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            table = build_table(store, parent_id, None, False, False)
            inside.append(time.perf_counter() - start)
            start = time.perf_counter()
            through = build_table(ClientRuns(uri), parent_id, None, False, False)
            client.append(time.perf_counter() - start)
        assert len(table.rows) == args.runs, len(table.rows)
        assert render(table, "csv", None) == render(through, "csv", None)
        print(summary(f"build_table {args.runs} runs, in process", inside))
        print(summary(f"build_table {args.runs} runs, via MLflow", client))


if __name__ == "__main__":
    main()
