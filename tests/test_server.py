"""A real ``mlflow server`` on loopback: a sweep logs to it over HTTP; checked via its REST API."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_cli
from servers import free_port, listening, live_members, start_server, stop_group


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` (sqlite backend, artifacts served) on a free port; stopped by group."""
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
               "--artifacts-destination", str(store / "artifacts")]  # fmt: skip
    process = start_server(command, store, tmp_path / "server.log", port)
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
