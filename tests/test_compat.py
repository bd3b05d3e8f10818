"""Runs recorded by release 0.1.0 (``tests/fixtures/store-0.1.0.tar.gz``: models pickled naming
``pipeline.model``, configs without ``_target_``) still predict, rerun and resume after the move."""

from __future__ import annotations

import sqlite3
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, cost_history, run_cli, runs_of, sqlite_uri
from pipeline import rerun, resume
from pipeline.predict import predict

FIXTURE = ROOT / "tests" / "fixtures" / "store-0.1.0.tar.gz"
ROWS = "a,b,c,d\n5.1,3.5,1.4,0.2\n6.3,3.3,6.0,2.5\n"


def unpack_old_store(cwd: Path) -> str:
    """The fixture store in ``cwd/mlruns``, its artifact locations pointed at this copy."""
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(cwd, filter="data")
    store = cwd / "mlruns"
    with sqlite3.connect(store / "mlflow.db") as db:
        for table, column in [
            ("experiments", "artifact_location"),
            ("runs", "artifact_uri"),
            ("logged_models", "artifact_location"),
        ]:
            db.execute(
                f"UPDATE {table} SET {column} = replace({column}, '@STORE@', ?)", (str(store),)
            )
    return sqlite_uri(store)


@pytest.fixture(scope="module")
def old_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    cwd = tmp_path_factory.mktemp("old")
    uri = unpack_old_store(cwd)
    (cwd / "rows.csv").write_text(ROWS)
    runs = {run.info.run_name: run for run in runs_of(uri)}
    assert set(runs) == {"epochs=100", "data=iris,epochs=50"}
    assert runs["epochs=100"].data.params["optim.name"] == "sgd"  # the 0.1.0 config shape
    return cwd, uri, runs


def test_an_old_standardized_model_predicts_from_the_command_line(old_store):
    cwd, _, runs = old_store
    run_id = runs["data=iris,epochs=50"].info.run_id
    result = run_cli(run_id, "rows.csv", cwd=cwd, module="pipeline.predict")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "label,prob_setosa,prob_versicolor,prob_virginica"
    assert [line.split(",")[0] for line in lines[1:]] == ["setosa", "virginica"]


def test_an_old_toy_model_predicts_in_process(old_store):
    cwd, uri, runs = old_store
    table = predict(runs["epochs=100"].info.run_id, str(cwd / "rows.csv"), uri, ",", True)
    assert table.columns.tolist() == ["label", "prob_0", "prob_1", "prob_2"]
    assert pd.api.types.is_float_dtype(table["prob_0"])


def test_an_old_run_reruns_and_reproduces(old_store, capfd):
    _, uri, runs = old_store
    original = runs["data=iris,epochs=50"]
    status = rerun.main([original.info.run_id, "--tracking-uri", uri])
    out = capfd.readouterr().out
    assert status == 0, out
    assert "reproduced: 51/51 cost values identical" in out
    (new,) = [r for r in runs_of(uri) if r.data.tags.get("rerun_of") == original.info.run_id]
    assert new.data.params["optim"] == "sgd"  # today's shape: the choice is a param
    assert new.data.tags["data.digest"] == original.data.tags["data.digest"]


def test_an_interrupted_old_run_resumes_in_place(tmp_path, capfd):
    """0.1.0 made no checkpoints: its interrupted run trains again from epoch 0, in the same run,
    and keeps the one value per epoch it had recorded."""
    uri = unpack_old_store(tmp_path)
    run = {r.info.run_name: r for r in runs_of(uri)}["epochs=100"]
    recorded = cost_history(uri, run.info.run_id)
    client = MlflowClient(tracking_uri=uri)
    client.set_terminated(run.info.run_id, "KILLED")  # as Ctrl-C left it
    assert resume.main([run.info.run_id, "--tracking-uri", uri]) == 0
    output = "".join(capfd.readouterr())
    assert "from epoch 0 (it has no checkpoint)" in output
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["resume.count"] == "1"
    assert cost_history(uri, run.info.run_id) == recorded  # 101 values, none twice
    assert len(runs_of(uri)) == 2  # no new run
