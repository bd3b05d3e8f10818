"""Runs opened and closed in bulk (``bulk.create_runs``, ``bulk.terminate_runs``) equal the runs
MLflow's client makes with ``create_run``, ``log_batch(params=)``, ``log_inputs`` and
``set_terminated``, for every reader: ``get_run`` (info, params, tags, dataset inputs),
``search_runs`` on params, tags, status, datasets and the parent run, ``mlflow runs list`` and
``describe``. Datasets are shared with the client's runs as MLflow shares them; a refused call
writes nothing; a store whose schema is not known, or a tracking server, gets the client."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.entities import DatasetInput, Param, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.fluent import _create_dataset_input

from conftest import sqlite_uri
from helpers.servers import plain_server
from pipeline.tracking.store import bulk
from pipeline.tracking.store.bulk import RunSpec

T = 1_700_000_000_000  # a timestamp, ms
DIGESTS = ("a" * 32, "b" * 32)
STATUSES = ("FINISHED", "FAILED", "KILLED", "FINISHED")


def splits(digest: str) -> list[DatasetInput]:
    """A run's dataset inputs as pipeline.tracking.run.datasets makes them (a split twice:
    MLflow keeps the first)."""
    source = CodeDatasetSource({"source": "sklearn:iris"})
    found = []
    for split, context, rows in (("train", "training", 6), ("validation", "validation", 2),
                                 ("test", "testing", 2), ("train", "testing", 1)):  # fmt: skip
        data = mlflow.data.from_numpy(
            np.ones((rows, 4)), targets=np.zeros(rows), source=source,
            name=f"iris/{split}", digest=digest,
        )  # fmt: skip
        found.append(_create_dataset_input(data, context, None))
    return found


def spec(experiment_id: str, parent: str, i: int) -> RunSpec:
    """A sweep's job: tags as lifecycle.open_run gives them, the config's values as params."""
    return RunSpec(
        experiment_id, f"lr=0.1,seed={i}",
        tags={"mlflow.user": "alice", "mlflow.source.name": "train.py",
              "mlflow.source.type": "LOCAL", "mlflow.parentRunId": parent, "job": str(i),
              "mlflow.note.content": "a sweep's job", "long": "x" * 5000},
        params={"optim.lr": "0.1", "seed": str(i), "epochs": "1000", "data": "iris"},
        inputs=splits(DIGESTS[i % 2]), start_time_ms=T + i,
    )  # fmt: skip


def specs(experiment_id: str, parent: str, count: int = 4) -> list[RunSpec]:
    return [spec(experiment_id, parent, i) for i in range(count)]


def with_client(client: MlflowClient, job: RunSpec) -> str:
    """What ``bulk.create_runs`` stands for: the client's calls for one run."""
    run = client.create_run(job.experiment_id, job.start_time_ms, dict(job.tags), job.run_name)
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in job.params.items()])
    client.log_inputs(run.info.run_id, datasets=list(job.inputs))
    return run.info.run_id


def normalized(found: dict, run_id: str) -> dict:
    """A run's dictionary (``Run.to_dictionary``, ``mlflow runs describe``) with its id written
    ``<id>`` and its dataset inputs in one order (MLflow's reader gives them in store order)."""
    found["inputs"]["dataset_inputs"].sort(key=lambda given: json.dumps(given, sort_keys=True))
    return json.loads(json.dumps(found).replace(run_id, "<id>"))


def view(client: MlflowClient, run_id: str) -> dict:
    return normalized(client.get_run(run_id).to_dictionary(), run_id)


def stored(uri: str, run_id: str) -> list[tuple]:
    """The run's rows in ``runs`` and ``inputs``, as the database has them, its ids left out."""
    with sqlite3.connect(bulk.engine(uri).url.database) as db:
        run = db.execute("SELECT * FROM runs WHERE run_uuid = ?", (run_id,)).fetchall()
        inputs = db.execute(
            "SELECT source_type, source_id, destination_type, step FROM inputs"
            " WHERE destination_id = ? ORDER BY source_id", (run_id,)
        ).fetchall()  # fmt: skip
    return [tuple(str(v).replace(run_id, "<id>") for v in row) for row in run + inputs]


def count(uri: str, table: str) -> int:
    with sqlite3.connect(bulk.engine(uri).url.database) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("migrated")
    MlflowClient(sqlite_uri(directory))
    return directory / "mlflow.db"


@pytest.fixture
def sqlite_store(tmp_path: Path, migrated: Path) -> str:
    """A fresh sqlite store (a copy of ``migrated``) with an experiment ``runs``."""
    shutil.copy(migrated, tmp_path / "mlflow.db")
    uri = sqlite_uri(tmp_path)
    MlflowClient(uri).create_experiment("runs", (tmp_path / "artifacts").as_uri())
    return uri


def both_sides(uri: str, client: MlflowClient) -> tuple[str, list[str], list[str]]:
    """The same jobs made with the client and in bulk (that order: bulk reuses the client's
    datasets), ended with the same statuses and times. (experiment, ours, MLflow's)."""
    experiment = client.get_experiment_by_name("runs").experiment_id
    parent = client.create_run(experiment, run_name="sweep").info.run_id
    jobs = specs(experiment, parent)
    mlflows = [with_client(client, job) for job in jobs]
    ours = bulk.create_runs(uri, jobs, client=client)
    for side in (mlflows, ours):
        assert [client.get_run(r).info.status for r in side] == ["RUNNING"] * len(jobs)
    for i, run_id in enumerate(mlflows):
        client.set_terminated(run_id, STATUSES[i], end_time=T + 100)
    bulk.terminate_runs(uri, dict(zip(ours, STATUSES, strict=True)), T + 100, client=client)
    return experiment, ours, mlflows


def check_equal_runs(client: MlflowClient, experiment: str, ours: list[str], mlflows: list[str]):
    for mine, theirs in zip(ours, mlflows, strict=True):
        assert view(client, mine) == view(client, theirs)
    run = client.get_run(ours[1])
    assert (run.info.status, run.info.start_time, run.info.end_time) == ("FAILED", T + 1, T + 100)
    assert run.info.run_name == run.data.tags["mlflow.runName"] == "lr=0.1,seed=1"
    assert run.info.user_id == "alice"
    assert run.info.lifecycle_stage == "active"
    assert run.info.artifact_uri.endswith(f"/{ours[1]}/artifacts")
    assert run.data.params == {"optim.lr": "0.1", "seed": "1", "epochs": "1000", "data": "iris"}
    given = run.inputs.dataset_inputs
    inputs = {(i.dataset.name, i.dataset.digest, i.tags[0].value) for i in given}
    assert inputs == {("iris/train", DIGESTS[1], "training"),
                      ("iris/validation", DIGESTS[1], "validation"),
                      ("iris/test", DIGESTS[1], "testing")}  # fmt: skip
    parent = run.data.tags["mlflow.parentRunId"]
    queries = {
        "params.seed = '2'": [2], "tags.job = '3'": [3], "attributes.status = 'KILLED'": [2],
        f"datasets.digest = '{DIGESTS[1]}'": [1, 3], "attributes.run_name = 'lr=0.1,seed=0'": [0],
        f"tags.mlflow.parentRunId = '{parent}'": [0, 1, 2, 3],
        "datasets.context = 'testing' AND attributes.status = 'FINISHED'": [0, 3],
    }  # fmt: skip
    for query, indexes in queries.items():
        found = {run.info.run_id for run in client.search_runs([experiment], query)}
        assert found == {side[i] for side in (ours, mlflows) for i in indexes}, query


def test_runs_made_in_bulk_equal_the_clients_on_sqlite(sqlite_store, monkeypatch):
    client = MlflowClient(sqlite_store)
    experiment, ours, mlflows = both_sides(sqlite_store, client)
    check_equal_runs(client, experiment, ours, mlflows)
    assert count(sqlite_store, "datasets") == 6  # 3 splits x 2 digests: ours reused MLflow's
    for mine, theirs in zip(ours, mlflows, strict=True):  # every column, as MLflow wrote it
        assert stored(sqlite_store, mine) == stored(sqlite_store, theirs)
    mlflow.set_tracking_uri(sqlite_store)  # not one an earlier test of this process set
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_store)
    from mlflow.runs import commands

    for mine, theirs in zip(ours, mlflows, strict=True):  # `mlflow runs describe`
        described = []
        for run_id in (mine, theirs):
            result = CliRunner().invoke(commands, ["describe", "--run-id", run_id])
            assert result.exit_code == 0, result.output
            described.append(normalized(json.loads(result.output), run_id))
        assert described[0] == described[1]
    listed = CliRunner().invoke(commands, ["list", "--experiment-id", experiment])
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[-1]: line for line in listed.output.splitlines()}
    for mine, theirs in zip(ours, mlflows, strict=True):
        assert lines[mine].replace(mine, "<id>") == lines[theirs].replace(theirs, "<id>")


@pytest.mark.slow
def test_runs_made_in_bulk_equal_the_clients_on_postgres(postgres):
    uri = postgres.create_database(migrated=True)
    client = MlflowClient(uri)
    client.create_experiment("runs")
    assert bulk.writes_directly(uri)
    check_equal_runs(client, *both_sides(uri, client))


def test_the_clients_runs_find_the_datasets_made_in_bulk(sqlite_store):
    client = MlflowClient(sqlite_store)
    experiment = client.get_experiment_by_name("runs").experiment_id
    jobs = specs(experiment, "p" * 32, count=3)
    ours = bulk.create_runs(sqlite_store, jobs)
    assert count(sqlite_store, "datasets") == 6
    assert count(sqlite_store, "inputs") == 9
    mlflows = [with_client(client, job) for job in jobs]
    assert count(sqlite_store, "datasets") == 6  # MLflow found ours
    for mine, theirs in zip(ours, mlflows, strict=True):
        assert view(client, mine) == view(client, theirs)


def test_names_times_and_users_as_create_run_gives_them(sqlite_store):
    client = MlflowClient(sqlite_store)
    experiment = client.get_experiment_by_name("runs").experiment_id
    before = int(mlflow.utils.time.get_current_time_millis())
    unnamed, tagged = bulk.create_runs(sqlite_store, [
        RunSpec(experiment, None),
        RunSpec(experiment, None, tags={"mlflow.runName": "from-tag", "mlflow.user": "bob"}),
    ])  # fmt: skip
    after = int(mlflow.utils.time.get_current_time_millis())
    first, second = client.get_run(unnamed), client.get_run(tagged)
    assert first.info.run_name
    assert first.data.tags["mlflow.runName"] == first.info.run_name
    assert first.info.user_id == "unknown"
    assert before <= first.info.start_time <= after
    assert second.info.run_name == "from-tag"
    assert second.info.user_id == "bob"
    assert (first.data.params, first.inputs.dataset_inputs) == ({}, [])
    bulk.terminate_runs(sqlite_store, {unnamed: "FINISHED"})
    ended = client.get_run(unnamed).info
    assert ended.status == "FINISHED"
    assert after <= ended.end_time


def test_a_refused_call_writes_nothing(sqlite_store):
    client = MlflowClient(sqlite_store)
    experiment = client.get_experiment_by_name("runs").experiment_id
    deleted = client.create_experiment("deleted")
    client.delete_experiment(deleted)
    good = specs(experiment, "p" * 32, count=2)
    refusals = {
        "must be in the 'active' state": [*good, *specs(deleted, "p" * 32, count=1)],
        "No Experiment with id=12345": [*good, RunSpec("12345", "x")],
        "different values": [*good, RunSpec(experiment, "x", tags={"mlflow.runName": "y"})],
        "exceeds the maximum length": [*good, RunSpec(experiment, "x", params={"a" * 300: "1"})],
    }
    for message, given in refusals.items():
        with pytest.raises(MlflowException, match=message):
            bulk.create_runs(sqlite_store, given)
        for table in ("runs", "tags", "params", "datasets", "inputs", "input_tags"):
            assert count(sqlite_store, table) == 0, (message, table)
    kept, gone = bulk.create_runs(sqlite_store, good)
    client.delete_run(gone)
    for statuses, message in (({kept: "FINISHED", gone: "FAILED"}, "must be in the 'active'"),
                              ({kept: "FINISHED", "f" * 32: "FAILED"}, "not found"),
                              ({kept: "DONE"}, "Fix: give one of FINISHED, FAILED, KILLED"),
                              ({kept: "RUNNING"}, "not a status a run ends with")):  # fmt: skip
        with pytest.raises(MlflowException, match=message):
            bulk.terminate_runs(sqlite_store, statuses)
        assert client.get_run(kept).info.status == "RUNNING"
        assert client.get_run(kept).info.end_time is None


def test_an_unknown_schema_revision_gets_the_clients_calls(tmp_path, sqlite_store):
    """A store whose schema revision this module has not verified: the client makes the runs,
    read back as the client's own; a refused call writes nothing there either."""
    shutil.copytree(Path(bulk.engine(sqlite_store).url.database).parent, tmp_path / "copy")
    uri = sqlite_uri(tmp_path / "copy")
    client = MlflowClient(uri)
    deleted = client.create_experiment("deleted")
    client.delete_experiment(deleted)
    with sqlite3.connect(tmp_path / "copy" / "mlflow.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'a0a0a0a0a0a0'")
    assert not bulk.writes_directly(uri)
    experiment, ours, mlflows = both_sides(uri, client)
    check_equal_runs(client, experiment, ours, mlflows)
    jobs = specs(experiment, "p" * 32, count=1) + specs(deleted, "p" * 32, count=1)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        bulk.create_runs(uri, jobs, client=client)
    assert len(client.search_runs([experiment], run_view_type=ViewType.ALL)) == 9  # 8 and parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with plain_server(tmp_path_factory.mktemp("server")) as url:
        yield url


@pytest.mark.slow
def test_a_tracking_server_gets_the_clients_calls(server):
    client = MlflowClient(server)
    client.create_experiment("runs")
    assert not bulk.writes_directly(server)
    experiment, ours, mlflows = both_sides(server, client)
    check_equal_runs(client, experiment, ours, mlflows)
    many = RunSpec(experiment, "many", params={f"p{i}": str(i) for i in range(250)})
    (run_id,) = bulk.create_runs(server, [many], client=client)  # over 100 params a request
    assert client.get_run(run_id).data.params == many.params
