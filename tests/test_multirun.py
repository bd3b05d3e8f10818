"""``-m`` sweeps: a parent run with nested FINISHED job runs, each equal to the run alone."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import cost_history, run_cli, runs_of, sqlite_uri, sweep_runs, train_into
from pipeline.core.data import toy
from pipeline.core.evaluate import evaluate
from pipeline.tracking.store.uri import sqlite_path
from pipeline.tracking.sweep import results
from pipeline.tracking.sweep.curves import cost_histories
from pipeline.tracking.sweep.table import table


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("sweep")
    result = run_cli("-m", "optim.lr=0.01,0.1", "seed=1,2,3", cwd=cwd)
    assert result.returncode == 0, result.stderr
    uri = sqlite_uri(cwd / "mlruns")
    return cwd, uri, result, *sweep_runs(uri)


def test_six_finished_runs_nested_under_the_sweep_with_readable_names(sweep):
    _, uri, _, parent, runs = sweep
    assert len(runs_of(uri)) == 7
    assert parent.info.run_name == "sweep optim.lr=0.01,0.1 seed=1,2,3"
    assert parent.info.status == "FINISHED"
    assert [r.info.status for r in runs] == ["FINISHED"] * 6
    assert sorted(r.info.run_name for r in runs) == sorted(
        f"optim.lr={lr},seed={seed}" for lr in ("0.01", "0.1") for seed in (1, 2, 3)
    )
    assert sorted(r.data.tags["hydra.job_num"] for r in runs) == [str(n) for n in range(6)]
    by_name = {r.info.run_name: r for r in runs}
    run = by_name["optim.lr=0.01,seed=2"]
    assert run.data.params["optim.lr"] == "0.01"
    assert run.data.params["seed"] == "2"
    assert run.data.tags["hydra.overrides"] == "optim.lr=0.01 seed=2"


def test_each_job_has_its_own_metrics_and_model(sweep):
    """Each job's logged models are its own: evaluated on the toy set, its ``model`` gives the
    job's final cost and accuracy (six different values), and its ``classifier`` the same
    probabilities (to float32 rounding: it builds its own tensor from the table)."""
    _, uri, _, _, runs = sweep
    data = toy().train
    mlflow.set_tracking_uri(uri)
    finals = set()
    for run in runs:
        assert len(cost_history(uri, run.info.run_id)) == 1001
        finals.add(run.data.metrics["final_cost"])
        model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
        assert evaluate(model, data) == {
            "cost": run.data.metrics["final_cost"],
            "accuracy": run.data.metrics["final_accuracy"],
        }
        classifier = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/classifier")
        features = pd.DataFrame(data.features.numpy(), columns=[f"x{i}" for i in range(4)])
        with torch.no_grad():
            expected = torch.softmax(model(data.features), dim=1).numpy()
        np.testing.assert_allclose(classifier.predict(features), expected, rtol=1e-5, atol=1e-7)
    assert len(finals) == 6


def test_the_parent_holds_the_summary_the_cost_curves_and_the_best_run(sweep):
    _, uri, result, parent, runs = sweep
    best = min(runs, key=lambda r: r.data.metrics["objective"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.tags["best_run_name"] == best.info.run_name
    assert parent.data.metrics["best_objective"] == best.data.metrics["objective"]
    assert parent.data.params["best.optim.lr"] == best.data.params["optim.lr"]
    assert parent.data.metrics["jobs_finished"] == 6
    assert parent.data.metrics["jobs_failed"] == 0
    client = MlflowClient(tracking_uri=uri)
    summary = Path(client.download_artifacts(parent.info.run_id, "summary.txt")).read_text()
    assert len(summary.strip().splitlines()) == 7
    for run in runs:
        assert run.info.run_id in summary
        assert run.info.run_id in result.stdout  # the summary is printed too
    png = client.download_artifacts(parent.info.run_id, "cost_curves.png")
    assert Path(png).read_bytes()[:4] == b"\x89PNG"
    assert f"Best run by objective (minimize): {best.info.run_name}" in result.stdout


def test_the_summary_reads_the_store_directly_as_mlflow_reads_it(sweep, tmp_path):
    """The summary's runs, table, best run and cost curves read straight from the store's tables
    equal what MLflow's client reads (the fallback for a server), the best run's ties and NaN
    included (by ``search_runs``' order: numbers, NaN, none; newest first; run id), and the
    table is what the sweep printed and logged."""
    _, uri, result, parent, runs = sweep
    copy = tmp_path / "mlflow.db"  # runs given extra metrics, away from the module's store
    shutil.copyfile(sqlite_path(uri), copy)
    client = MlflowClient(tracking_uri=f"sqlite:///{copy}")
    sweep_dir, experiment = Path(parent.data.tags["sweep.dir"]), parent.info.experiment_id
    direct = results.collect(client, experiment, sweep_dir, direct=True)
    assert direct == results.collect(client, experiment, sweep_dir, direct=False)
    assert [j.run_id for j in direct] == [
        r.info.run_id for r in sorted(runs, key=lambda r: int(r.data.tags["hydra.job_num"]))
    ]
    text = table(direct)
    assert text in result.stdout
    summary = client.download_artifacts(parent.info.run_id, "summary.txt")
    assert Path(summary).read_text() == text + "\n"
    ids = sorted(r.info.run_id for r in runs)
    for run_id, value in zip(ids, [0.5, math.nan, 0.5, -1.0, math.nan, 0.25], strict=True):
        client.log_metric(run_id, "probe", value)
    client.log_metric(ids[0], "tie", 1.0)
    client.log_metric(ids[1], "tie", 1.0)
    direct = results.collect(client, experiment, sweep_dir, direct=True)
    for metric in ("objective", "probe", "tie", "final_accuracy", "absent"):
        for direction in ("minimize", "maximize"):
            best = [
                results.best(client, experiment, direct, metric, direction, direct=read)
                for read in (True, False)
            ]
            assert best[0].run_id == best[1].run_id, (metric, direction)
    assert results.best(client, experiment, direct, "probe", "minimize").metric("probe") == -1.0
    assert results.best(client, experiment, direct, "probe", "maximize").metric("probe") == 0.5
    histories = cost_histories(client, ids)
    assert histories == {i: sorted((m.step, m.value) for m in
                                   client.get_metric_history(i, "cost")) for i in ids}  # fmt: skip
    assert [len(h) for h in histories.values()] == [1001] * 6


def test_a_sweep_job_equals_the_same_config_run_alone(sweep, tmp_path):
    _, sweep_uri, _, _, runs = sweep
    (swept,) = [r for r in runs if r.info.run_name == "optim.lr=0.01,seed=2"]
    assert swept.data.tags["batch.jobs"] == str(len(runs))  # the sweep trained as one batch
    alone_uri = sqlite_uri(tmp_path / "mlruns")
    _, single = train_into(alone_uri, "optim.lr=0.01", "seed=2")
    assert "mlflow.parentRunId" not in single.data.tags
    for key in ("cost", "accuracy"):
        assert cost_history(alone_uri, single.info.run_id, key) == cost_history(
            sweep_uri, swept.info.run_id, key
        )


def test_failing_and_diverging_jobs_are_isolated_and_reported(tmp_path):
    result = run_cli("-m", "optim.lr=-1,1e38,0.1", "epochs=50", cwd=tmp_path)
    assert result.returncode == 1
    assert "Sweep had failures: 2 of 3 jobs did not finish (jobs 0, 1" in result.stderr
    assert "Job 0 failed: Config error: optim.lr must be > 0, got -1.0" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    uri = sqlite_uri(tmp_path / "mlruns")
    parent, runs = sweep_runs(uri)
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["jobs_failed"] == 2
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {"optim.lr=1e+38", "optim.lr=0.1"}  # the swept key only
    diverged = by_name["optim.lr=1e+38"]
    assert diverged.info.status == "FAILED"
    assert diverged.data.tags["batch.jobs"] == "2"  # it failed alone, inside its batch
    assert diverged.data.tags["failure_reason"].startswith(
        "Training diverged: cost is nan at epoch"
    )
    assert len(cost_history(uri, diverged.info.run_id)) <= 2  # stopped at once, kept what it had
    assert by_name["optim.lr=0.1"].info.status == "FINISHED"
    summary = MlflowClient(tracking_uri=uri).download_artifacts(parent.info.run_id, "summary.txt")
    text = Path(summary).read_text()
    assert "NO RUN" in text
    assert "optim.lr must be > 0" in text
    assert "Training diverged" in text


def test_a_resumed_sweeps_new_best_run_updates_its_tags_and_counts(tmp_path, caplog):
    """The parent's ``best.*`` params were logged by an earlier attempt with another best run:
    MLflow refuses to change them, so they stay (a warning says so), while the counts, the best
    metric and the tags name the new best run."""
    from pipeline.tracking.store.reads import RunRecord
    from pipeline.tracking.sweep.parent import log_summary

    client = MlflowClient(sqlite_uri(tmp_path / "mlruns"))
    experiment = client.create_experiment("resumed")
    parent = client.create_run(experiment).info.run_id
    client.log_param(parent, "best.optim.lr", "0.01")  # the first attempt's best
    child = client.create_run(experiment, run_name="optim.lr=0.1").info.run_id
    run = RunRecord(child, "optim.lr=0.1", "FINISHED", experiment, 0, "",
                    params={"optim.lr": "0.1"}, metrics={"objective": 0.25})  # fmt: skip
    best = results.JobResult(0, "optim.lr=0.1", "FINISHED", "", run)
    log_summary(client, parent, [best], best, "objective")
    logged = client.get_run(parent).data
    assert logged.tags["best_run_id"] == child
    assert logged.metrics == {"jobs_finished": 1, "jobs_failed": 0, "best_objective": 0.25}
    assert logged.params == {"best.optim.lr": "0.01"}
    assert f"The best run is now {child}" in caplog.text
