"""A real ``mlflow server`` on loopback: a sweep logs to it over HTTP (checked via its REST API);
a run's model is registered through it and predicts by alias."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator

import pandas as pd
import pytest

from conftest import run_cli, train_into
from helpers.servers import free_port, listening, live_members, start_server, stop_group
from pipeline import register
from pipeline.predict import predict


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` (sqlite backend, artifacts served) on a free port; stopped by group."""
    port = free_port()
    tmp_path = tmp_path_factory.mktemp("server")
    store = tmp_path / "server"
    store.mkdir()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
               "--artifacts-destination", str(store / "artifacts")]  # fmt: skip
    no_job_runner = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # GenAI jobs: 8 processes
    process = start_server(command, store, tmp_path / "server.log", port, no_job_runner)
    base = f"http://127.0.0.1:{port}"
    try:
        yield base
    finally:
        stop_group(process)
        assert not live_members(process.pid), "the server left processes behind"
        assert not listening(port)


def rest(base: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.mark.slow
def test_a_sweep_logs_to_a_tracking_server(server, tmp_path):
    result = run_cli("-m", "optim.lr=0.01,0.1", "epochs=30", f"tracking.uri={server}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "View run" not in result.stdout + result.stderr  # only the pipeline's own lines
    assert not (tmp_path / "mlruns").exists()  # nothing went to a local store
    experiments = rest(server, "experiments/search?max_results=10")["experiments"]
    (experiment,) = [e for e in experiments if e["name"] == "softmax-regression"]
    found = rest(server, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})
    runs = {r["info"]["run_name"]: r for r in found["runs"]}
    assert set(runs) == {
        "sweep optim.lr=0.01,0.1 epochs=30",
        "optim.lr=0.01",
        "optim.lr=0.1",
    }
    parent_id = runs["sweep optim.lr=0.01,0.1 epochs=30"]["info"]["run_id"]
    for name in ("optim.lr=0.01", "optim.lr=0.1"):
        run = runs[name]
        assert run["info"]["status"] == "FINISHED"
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["mlflow.parentRunId"] == parent_id
        history = rest(
            server, f"metrics/get-history?run_id={run['info']['run_id']}&metric_key=cost"
        )
        assert sorted(m["step"] for m in history["metrics"]) == list(range(31))
        assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:/")
    address = f"view it at {server}/#/experiments/{experiment['experiment_id']}/runs/"
    assert address in result.stdout


def test_register_through_the_server_and_predict_by_alias(server, tmp_path, capsys):
    _, run = train_into(server, "data=iris", "epochs=20", "tracking.experiment=registered")
    assert register.main([run.info.run_id, "--tracking-uri", server]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "as softmax-regression version 1, alias 'champion' (new)",
        "models:/softmax-regression@champion",
    ]
    found = rest(server, "registered-models/alias?name=softmax-regression&alias=champion")
    assert found["model_version"]["run_id"] == run.info.run_id
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,c,d\n5.1,3.5,1.4,0.2\n6.3,3.3,6.0,2.5\n")
    by_alias = predict("models:/softmax-regression@champion", str(rows), server, ",", True)
    pd.testing.assert_frame_equal(by_alias, predict(run.info.run_id, str(rows), server, ",", True))
