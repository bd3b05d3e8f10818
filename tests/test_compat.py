"""Runs recorded by earlier releases still predict, rerun and resume: 0.1.0's
(``tests/fixtures/store-0.1.0.tar.gz``: models pickled naming ``pipeline.model``, configs without
``_target_``) after the package was grouped by concern, and 0.2.0's (``store-0.2.0.tar.gz``, with
a sweep's pickled Hydra callbacks) after ``tracking`` was."""

from __future__ import annotations

import pickle
import re
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, cost_history, run_cli, runs_of, sqlite_uri
from pipeline import rerun, resume
from pipeline.predict import predict

FIXTURE = ROOT / "tests" / "fixtures" / "store-0.1.0.tar.gz"
FIXTURE_0_2_0 = ROOT / "tests" / "fixtures" / "store-0.2.0.tar.gz"
ROWS = "a,b,c,d\n5.1,3.5,1.4,0.2\n6.3,3.3,6.0,2.5\n"


def unpack_old_store(cwd: Path, fixture: Path = FIXTURE) -> str:
    """The fixture store in ``cwd/mlruns``, its artifact locations pointed at this copy."""
    with tarfile.open(fixture) as archive:
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


def test_an_old_run_reruns_and_reproduces(old_store):
    """Bit for bit. MKL picks its kernels by CPU, and on this machine's (AVX-512) its default
    ones round iris's products differently from the CPU that made the fixture (1.2e-7 from
    step 4); its conditional-reproducibility mode, MKL_CBWR=COMPATIBLE, rounds as that CPU did
    on any x86 one. MKL reads it when it loads: hence a process of its own."""
    cwd, uri, runs = old_store
    original = runs["data=iris,epochs=50"]
    done = run_cli(original.info.run_id, "--tracking-uri", uri, cwd=cwd, module="pipeline.rerun",
                   env={"MKL_CBWR": "COMPATIBLE"})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reproduced: 51/51 cost values identical" in done.stdout
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


@pytest.fixture(scope="module")
def store_0_2_0(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    cwd = tmp_path_factory.mktemp("0.2.0")
    uri = unpack_old_store(cwd, FIXTURE_0_2_0)
    (cwd / "rows.csv").write_text(ROWS)
    runs = {run.info.run_name: run for run in runs_of(uri)}
    assert set(runs) == {"epochs=20", "epochs=20,experiment=iris_mlp"}
    assert {run.data.tags["code.version"] for run in runs.values()} == {"0.2.0"}
    return cwd, uri, runs


def test_0_2_0_models_predict(store_0_2_0):
    """Their PyTorch models were pickled naming ``pipeline.core.model``; their ``classifier``
    models were logged from ``pipeline/tracking/classifier.py``, which has moved since."""
    cwd, uri, runs = store_0_2_0
    rows = str(cwd / "rows.csv")
    mlp = predict(runs["epochs=20,experiment=iris_mlp"].info.run_id, rows, uri, ",", True)
    assert mlp.columns.tolist() == ["label", "prob_setosa", "prob_versicolor", "prob_virginica"]
    assert mlp["label"].tolist() == ["setosa", "virginica"]
    toy = predict(runs["epochs=20"].info.run_id, rows, uri, ",", True)
    assert toy.columns.tolist() == ["label", "prob_0", "prob_1", "prob_2"]
    assert toy.iloc[:, 1:].sum(axis=1).round(6).tolist() == [1.0, 1.0]


def test_a_0_2_0_run_reruns_and_reproduces(store_0_2_0, capfd):
    """Bit for bit on a CPU like the one that made the fixture; on another, whose kernels may
    round differently, within float rounding (and the command then says so, exit status 1)."""
    _, uri, runs = store_0_2_0
    original = runs["epochs=20,experiment=iris_mlp"]
    status = rerun.main([original.info.run_id, "--tracking-uri", uri])
    out = capfd.readouterr().out
    assert re.search(r"reproduced: \d+/21 cost values identical", out), out
    assert status == (1 if "NOT reproduced" in out else 0), out
    (new,) = [r for r in runs_of(uri) if r.data.tags.get("rerun_of") == original.info.run_id]
    assert new.info.status == "FINISHED"
    was, now = cost_history(uri, original.info.run_id), cost_history(uri, new.info.run_id)
    assert len(was) == 21
    assert now == pytest.approx(was, rel=1e-5)
    assert new.data.params["model.hidden"] == "[16]"
    assert new.data.tags["data.digest"] == original.data.tags["data.digest"]


def test_a_0_2_0_sweeps_pickled_callbacks_load_in_a_fresh_process(tmp_path):
    """A Slurm job of a sweep launched by 0.2.0 unpickles the sweep's Hydra callbacks (submitit
    pickles them), which name ``pipeline.tracking.secrets`` and ``pipeline.tracking.callbacks``.
    A fresh interpreter, as a job's is: the old paths resolve while ``pipeline`` first loads."""
    with tarfile.open(FIXTURE_0_2_0) as archive:
        archive.extract("callbacks.pkl", tmp_path, filter="data")
    pickled = (tmp_path / "callbacks.pkl").read_bytes()
    assert b"pipeline.tracking.secrets" in pickled
    assert b"pipeline.tracking.callbacks" in pickled
    load = (
        "import pickle, sys; callbacks = pickle.load(open(sys.argv[1], 'rb')).callbacks; "
        "print(*(f'{type(c).__module__}.{type(c).__name__}' for c in callbacks))"
    )
    done = subprocess.run(
        [sys.executable, "-c", load, str(tmp_path / "callbacks.pkl")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "pipeline.tracking.store.password.PasswordToEnvironment",
        "pipeline.tracking.sweep.callbacks.SweepTracking",
    ]
    assert pickle.loads(pickled).callbacks  # in this process too
