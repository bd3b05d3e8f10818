"""Cheap writes read back exactly by MLflow: metric histories inserted straight into the store's
tables (``pipeline.tracking.store.bulk``) equal what MLflow's ``log_batch`` stores, for its
readers (history, latest values, search, ``mlflow runs describe``); a store whose schema is not
known, or a tracking server, gets ``log_batch``. Models logged from a template equal MLflow's
own ``log_model``: files, records, and what they predict."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from conftest import cli_env, sqlite_uri
from helpers.servers import plain_server
from pipeline.tracking.run import models
from pipeline.tracking.run.metrics import MetricBuffer
from pipeline.tracking.store import bulk

T = 1_700_000_000_000  # a timestamp, ms
# Values MLflow stores specially (NaN, +/-inf), a step logged twice (newer time, then an older
# one), steps out of order, equal (step, timestamp) with different values: what "latest" means.
FIRST = [
    ("cost", 2.0, T, 0), ("cost", 1.5, T + 1, 1), ("cost", float("nan"), T + 2, 2),
    ("cost", 1.25, T + 5, 2), ("cost", 1.0, T + 3, 2), ("accuracy", float("inf"), T, 0),
    ("accuracy", float("-inf"), T + 1, 1), ("accuracy", 0.5, T + 1, 1), ("val", 3.0, T, 7),
    ("val", 9.0, T, 3), ("tie", float("nan"), T, 0), ("tie", 0.0, T, 0),
]  # fmt: skip
# A second write: older steps (latest stays), a newer one, a duplicate of a stored row.
SECOND = [
    ("cost", 0.5, T + 9, 1), ("val", 1.0, T + 9, 8), ("cost", 2.0, T, 0), ("new", -1.0, T, 4),
    ("tie", -0.0, T, 0), ("accuracy", float("nan"), T + 1, 1),
]  # fmt: skip


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple]]:
    run = client.get_run(run_id)
    found = {}
    for key in run.data.metrics:
        rows = [(m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)]
        found[key] = sorted(rows, key=lambda row: (row[0], row[1], repr(row[2])))
    return found


def assert_equal_runs(client: MlflowClient, ours: str, mlflows: str) -> None:
    """Every reader's view of run ``ours`` equals its view of ``mlflows``."""
    expected, got = histories(client, mlflows), histories(client, ours)
    assert got.keys() == expected.keys()
    for key, rows in expected.items():
        assert len(got[key]) == len(rows), key
        for mine, theirs in zip(got[key], rows, strict=True):
            assert mine[:2] == theirs[:2], (key, mine, theirs)
            assert same(mine[2], theirs[2]), (key, mine, theirs)
    latest, expected_latest = (client.get_run(r).data.metrics for r in (ours, mlflows))
    assert latest.keys() == expected_latest.keys()
    assert all(same(latest[k], expected_latest[k]) for k in latest), (latest, expected_latest)


def log_with_mlflow(client: MlflowClient, run_id: str, rows: list[tuple]) -> None:
    metrics = [Metric(key, value, timestamp, step) for key, value, timestamp, step in rows]
    client.log_batch(run_id, metrics=metrics)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new store's database, made once (MLflow's migrations take a second or two)."""
    directory = tmp_path_factory.mktemp("migrated")
    MlflowClient(sqlite_uri(directory))
    return directory / "mlflow.db"


@pytest.fixture
def sqlite_store(tmp_path: Path, migrated: Path) -> str:
    """A fresh sqlite store (a copy of ``migrated``) with an experiment ``writes``."""
    shutil.copy(migrated, tmp_path / "mlflow.db")
    uri = sqlite_uri(tmp_path)
    MlflowClient(uri).create_experiment("writes", (tmp_path / "artifacts").as_uri())
    return uri


def two_runs(client: MlflowClient) -> tuple[str, str]:
    experiment = client.get_experiment_by_name("writes") or client.get_experiment(
        client.create_experiment("writes")
    )
    return tuple(client.create_run(experiment.experiment_id).info.run_id for _ in range(2))


def check_store(uri: str) -> None:
    assert bulk.writes_directly(uri)
    client = MlflowClient(uri)
    ours, mlflows = two_runs(client)
    for rows in (FIRST, SECOND):
        bulk.write_metrics(uri, [(ours, *row) for row in rows], {ours: {"phase": "x"}})
        log_with_mlflow(client, mlflows, rows)
    assert_equal_runs(client, ours, mlflows)
    assert client.get_run(ours).data.tags["phase"] == "x"
    experiment = client.get_run(ours).info.experiment_id
    for order in ("metrics.val DESC", "metrics.cost ASC"):
        found = client.search_runs([experiment], order_by=[order])
        assert {r.info.run_id for r in found} == {ours, mlflows}
        values = [r.data.metrics.get(order.split()[0].removeprefix("metrics.")) for r in found]
        assert same(values[0], values[1])  # ours and MLflow's are equals, side by side
    for query in ("metrics.val = 1.0", "metrics.cost > 0.9"):
        assert {r.info.run_id for r in client.search_runs([experiment], query)} == {ours, mlflows}
    check_search_order(uri, client, experiment)
    for key in ("cost", "val"):  # one read of both runs' histories, each as MLflow reads it
        read = bulk.read_histories(uri, [ours, mlflows], key)
        for run_id in (ours, mlflows):
            history = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
            assert [step for step, _ in read[run_id]] == sorted(step for step, _ in history)
            assert sorted(map(repr, read[run_id])) == sorted(map(repr, history)) != []


def check_search_order(uri: str, client: MlflowClient, experiment: str) -> None:
    """Runs ordered and filtered by a metric, ours as MLflow's (NaN and infinities included)."""
    scores = [2.0, float("nan"), float("inf"), -1.0, float("-inf"), 0.5]
    for side in ("ours", "mlflow"):
        for score in scores:
            run_id = client.create_run(experiment, tags={"side": side}).info.run_id
            if side == "ours":
                bulk.write_metrics(uri, [(run_id, "score", score, T, 0)])
            else:
                log_with_mlflow(client, run_id, [("score", score, T, 0)])
    for order in ("ASC", "DESC"):
        found = {}
        for side in ("ours", "mlflow"):
            query = f"tags.side = '{side}' AND metrics.score > -2"
            runs = client.search_runs([experiment], query, order_by=[f"metrics.score {order}"])
            found[side] = [r.data.metrics["score"] for r in runs]
        assert len(found["ours"]) == len(found["mlflow"]) >= 3
        assert all(map(same, found["ours"], found["mlflow"])), found


def test_bulk_writes_read_back_as_mlflows_own_on_sqlite(sqlite_store):
    check_store(sqlite_store)
    client = MlflowClient(sqlite_store)
    ours, mlflows = two_runs(client)
    bulk.write_metrics(sqlite_store, [(ours, *row) for row in FIRST])
    log_with_mlflow(client, mlflows, FIRST)
    described = []
    mlflow.set_tracking_uri(sqlite_store)  # not one an earlier test of this process set
    for run_id in (ours, mlflows):  # `mlflow runs describe`, as a user runs it
        from mlflow.runs import commands

        env = {"MLFLOW_TRACKING_URI": sqlite_store}
        result = CliRunner().invoke(commands, ["describe", "--run-id", run_id], env=env)
        assert result.exit_code == 0, result.output
        described.append(json.loads(result.output)["data"]["metrics"])
    assert described[0] == described[1]


@pytest.mark.slow
def test_bulk_writes_read_back_as_mlflows_own_on_postgres(postgres):
    check_store(postgres.create_database(migrated=True))


def test_many_runs_in_one_call_and_refusals(sqlite_store):
    client = MlflowClient(sqlite_store)
    runs = [two_runs(client)[0] for _ in range(3)]
    rows = [(run_id, "cost", float(i + step), T + step, step) for i, run_id in
            enumerate(runs) for step in range(5)]  # fmt: skip
    bulk.write_metrics(sqlite_store, rows, {run_id: {"done": "yes"} for run_id in runs})
    for i, run_id in enumerate(runs):
        run = client.get_run(run_id)
        assert run.data.metrics == {"cost": i + 4.0}
        assert run.data.tags["done"] == "yes"
    client.delete_run(runs[0])
    for bad, message in ((runs[0], "must be in the 'active' state"), ("f" * 32, "not found")):
        with pytest.raises(MlflowException, match=message):  # nothing of the call is written
            bulk.write_metrics(sqlite_store, [(runs[1], "x", 1.0, T, 0), (bad, "x", 1.0, T, 0)])
        assert "x" not in client.get_run(runs[1]).data.metrics
    with pytest.raises(MlflowException, match="run's name"):
        bulk.write_metrics(sqlite_store, [], {runs[1]: {"mlflow.runName": "other"}})
    with pytest.raises(MlflowException, match="Invalid value"):
        bulk.write_metrics(sqlite_store, [(runs[1], "x", "1.0", T, 0)])


def test_a_resumed_run_keeps_its_recorded_steps(sqlite_store):
    client = MlflowClient(sqlite_store)
    run_id, _ = two_runs(client)
    buffer = MetricBuffer(client, run_id, flush_every_s=600)
    for step in range(4):  # accuracy every other epoch, say
        values = {"cost": 10.0 + step} | ({"accuracy": 0.1} if step % 2 == 0 else {})
        buffer.log(step, values, timestamp_ms=T + step)
    buffer.flush()
    resumed = MetricBuffer(client, run_id, flush_every_s=600, recorded={"cost": 3, "accuracy": 2})
    for step in range(2, 6):  # from the checkpoint at epoch 1: epochs 2, 3 again, then new ones
        resumed.log(step, {"cost": 20.0 + step, "accuracy": 0.2}, timestamp_ms=T + 10 + step)
    resumed.log_summary({"final_cost": 25.0})
    resumed.flush()
    costs = [(m.step, m.value) for m in client.get_metric_history(run_id, "cost")]
    assert sorted(costs) == [(0, 10.0), (1, 11.0), (2, 12.0), (3, 13.0), (4, 24.0), (5, 25.0)]
    accuracy = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "accuracy"))
    assert accuracy == [(0, 0.1), (2, 0.1), (3, 0.2), (4, 0.2), (5, 0.2)]
    run = client.get_run(run_id)
    assert run.data.tags["progress.epoch"] == "5"
    assert run.data.metrics == {"cost": 25.0, "accuracy": 0.2, "final_cost": 25.0}


def test_an_unknown_schema_revision_gets_mlflows_log_batch(tmp_path, sqlite_store):
    """A copy of a store whose schema revision this module has not verified (MLflow opened it
    first, at its own revision): written with MLflow's client, read back the same."""
    shutil.copytree(Path(bulk.engine(sqlite_store).url.database).parent, tmp_path / "copy")
    uri = sqlite_uri(tmp_path / "copy")
    client = MlflowClient(uri)
    ours, mlflows = two_runs(client)  # MLflow checked the revision: its store is open
    with sqlite3.connect(tmp_path / "copy" / "mlflow.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'a0a0a0a0a0a0'")
    assert not bulk.writes_directly(uri)
    assert not bulk.writes_directly(sqlite_uri(tmp_path / "none"))  # none is created there
    assert not (tmp_path / "none" / "mlflow.db").exists()
    rows = [(ours, *row) for row in FIRST] * 2 + [(ours, "long", 1.0, T, s) for s in range(1500)]
    bulk.write_metrics(uri, rows, {ours: {"phase": "x"}}, client=client)
    log_with_mlflow(client, mlflows, FIRST + [("long", 1.0, T, s) for s in range(1500)])
    assert_equal_runs(client, ours, mlflows)
    assert client.get_run(ours).data.tags["phase"] == "x"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with plain_server(tmp_path_factory.mktemp("server")) as url:
        yield url


@pytest.mark.slow
def test_a_tracking_server_gets_log_batch_and_template_models(server, tmp_path):
    client = MlflowClient(server)
    ours, mlflows = two_runs(client)
    assert not bulk.writes_directly(server)
    long = [("long", float(s), T, s) for s in range(2500)]  # over the server's 1000 a request
    bulk.write_metrics(server, [(ours, *row) for row in FIRST + long], client=client)
    log_with_mlflow(client, mlflows, FIRST)
    for start in range(0, len(long), 1000):
        log_with_mlflow(client, mlflows, long[start : start + 1000])
    assert_equal_runs(client, ours, mlflows)
    model, example, classes, features = reference_model()
    template = models.ModelTemplate.prepare(model, example, classes, features)
    template.log(client, ours, model)
    mlflow.set_tracking_uri(server)
    assert_predicts_as(model, example, ours)


def reference_model() -> tuple[torch.nn.Module, torch.Tensor, list[str], list[str]]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    return model, torch.randn(2, 4), ["setosa", "versicolor", "virginica"], list("abcd")


def assert_predicts_as(model: torch.nn.Module, example: torch.Tensor, run_id: str) -> None:
    loaded = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    features = torch.randn(7, 4)
    with torch.no_grad():
        assert torch.equal(loaded(features), model(features))
    classifier = mlflow.pyfunc.load_model(f"runs:/{run_id}/classifier")
    table = pd.DataFrame(features.double().numpy(), columns=list("abcd"))
    expected = torch.softmax(model(features), dim=1).detach().numpy()
    assert (classifier.predict(table).to_numpy() == expected).all()


def log_with_mlflows_log_model(
    model: torch.nn.Module, example: torch.Tensor, class_names: list[str], feature_names: list[str]
) -> None:
    """The models as ``mlflow.pytorch.log_model`` and ``mlflow.pyfunc.log_model`` log them
    (what pipeline.tracking.run.models did per run before its template)."""
    model = model.cpu().eval()
    with torch.no_grad():
        logits = model(example)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={models.np.__version__}"]
    example_table = pd.DataFrame(example.double().numpy(), columns=feature_names)
    probabilities = pd.DataFrame(torch.softmax(logits, dim=1).numpy(), columns=class_names)
    with tempfile.TemporaryDirectory() as tmp, models.requirements_as_given():
        torch_model = mlflow.pytorch.log_model(
            model, name="model", signature=infer_signature(example.numpy(), logits.numpy()),
            input_example=example.numpy(), pip_requirements=requirements,
            serialization_format="pickle", code_paths=[models.model_code(Path(tmp))],
        )  # fmt: skip
        names = Path(tmp, "names.json")
        names.write_text(json.dumps({"classes": class_names, "features": feature_names}))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*An input example was not provided")
            mlflow.pyfunc.log_model(
                name="classifier", python_model=str(models.CLASSIFIER_CODE),
                artifacts={"torch_model": torch_model.model_uri, "names": str(names)},
                signature=infer_signature(example_table, probabilities),
                pip_requirements=[*requirements, f"pandas=={pd.__version__}"],
            )  # fmt: skip


PER_RUN = {"artifact_path", "model_id", "model_uuid", "run_id", "utc_time_created"}


def logged(client: MlflowClient, run_id: str) -> dict[str, tuple]:
    """Each of the run's LoggedModels by name: its status, tags, params, and its files (the
    MLmodel files without what differs by run, the names.json path MLflow recorded)."""
    run = client.get_run(run_id)
    found = {}
    for output in run.outputs.model_outputs:
        model = client.get_logged_model(output.model_id)
        root = Path(model.artifact_location.removeprefix("file://"))
        files = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            content = path.read_bytes()
            if path.name == "MLmodel":
                described = yaml.safe_load(content)
                assert described["model_id"] == described["model_uuid"]
                assert described["run_id"] == run_id
                flavor = described["flavors"].get("python_function", {})
                for artifact in flavor.get("artifacts", {}).values():
                    artifact["uri"] = artifact["uri"].startswith("models:/m-")
                content = {k: v for k, v in described.items() if k not in PER_RUN}
            files[name] = content
        found[model.name] = (model.status, model.tags, model.params, output.step, files)
    return found


def test_models_from_a_template_equal_mlflows_log_model(sqlite_store):
    client = MlflowClient(sqlite_store)
    mlflow.set_tracking_uri(sqlite_store)
    model, example, classes, features = reference_model()
    run_ids = []
    for log in (log_with_mlflows_log_model, models.log_model):
        with mlflow.start_run(experiment_id=client.get_experiment_by_name("writes").experiment_id):
            mlflow.log_params({"lr": 0.1, "seed": 1})
            log(model, example, classes, features)
            run_ids.append(mlflow.active_run().info.run_id)
    theirs, ours = (logged(client, run_id) for run_id in run_ids)
    assert ours.keys() == theirs.keys() == {"model", "classifier"}
    for name in ours:
        assert ours[name][:4] == theirs[name][:4], name  # status, tags, params, step
        assert ours[name][4].keys() == theirs[name][4].keys(), name
        for path, content in theirs[name][4].items():
            assert ours[name][4][path] == content, (name, path)
    for run_id in run_ids:
        assert_predicts_as(model, example, run_id)
        for name in ("model", "classifier"):  # the LoggedModel's own URI loads too
            (found,) = client.search_logged_models(
                [client.get_run(run_id).info.experiment_id],
                filter_string=f"source_run_id = '{run_id}' AND name = '{name}'",
            )
            assert mlflow.pyfunc.load_model(found.model_uri).metadata.run_id == run_id


def test_many_runs_models_recorded_in_one_transaction(sqlite_store):
    """The batched path: each run's files, then every run's LoggedModels in one call; each run's
    models load (by run and by model id) and are found as ``pipeline.register`` finds them."""
    from pipeline.tracking.query import registry

    client = MlflowClient(sqlite_store)
    mlflow.set_tracking_uri(sqlite_store)
    experiment = client.get_experiment_by_name("writes").experiment_id
    _, example, classes, features = reference_model()
    template = models.ModelTemplate.prepare(reference_model()[0], example, classes, features)
    trained, records = {}, []
    for seed in range(3):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
        run_id = client.create_run(experiment).info.run_id
        assert models.writes_directly(sqlite_store, experiment)
        records += template.write_files(sqlite_store, run_id, model, experiment, {"seed": "1"})
        trained[run_id] = model
    bulk.write_logged_models(sqlite_store, records)
    for run_id, model in trained.items():
        assert_predicts_as(model, example, run_id)
        found = registry.classifier_of(client, client.get_run(run_id))
        assert found.status == "READY"
        assert found.params == {"seed": "1"}
        assert {o.model_id for o in client.get_run(run_id).outputs.model_outputs} == {
            r.model_id for r in records if r.run_id == run_id
        }
        loaded = mlflow.pyfunc.load_model(found.model_uri)
        table = pd.DataFrame(example.double().numpy(), columns=features)
        expected = torch.softmax(model(example), dim=1).detach().numpy()
        assert (loaded.predict(table).to_numpy() == expected).all()
    assert all(t.checked and t.pieces is not None for t in template.mlmodel_texts)  # rendered
    # What all runs' models share is one file, hard-linked; what is a run's own is its own.
    roots = [Path(r.artifact_location.removeprefix("file://")) for r in records]
    code = [root / prefix / "code/pipeline/errors.py" for root, prefix in
            zip(roots, ["", "artifacts/0/"] * 3, strict=True)]  # fmt: skip
    assert len({path.stat().st_ino for path in code}) == 1
    assert len({(root / "MLmodel").stat().st_ino for root in roots}) == 6
    # A run's models deleted, the other runs' still load, and the next run's files are written.
    for root in roots[:2]:
        shutil.rmtree(root)
    run_id = list(trained)[1]
    assert_predicts_as(trained[run_id], example, run_id)
    late = client.create_run(experiment).info.run_id
    bulk.write_logged_models(sqlite_store, template.write_files(
        sqlite_store, late, trained[run_id], experiment, {"seed": "1"}))  # fmt: skip
    assert_predicts_as(trained[run_id], example, late)


WRITER = """
import sys
from mlflow.tracking import MlflowClient
from pipeline.tracking.run.metrics import MetricBuffer
uri, run_id = sys.argv[1:]
buffer = MetricBuffer(MlflowClient(uri), run_id, flush_every_s=600)
for step in range(10000):
    buffer.log(step, {"cost": float(step), "accuracy": 0.5}, timestamp_ms=1)
    if step % 2000 == 1999:
        buffer.flush()  # 4000 values: two transactions
"""


@pytest.mark.slow  # three processes' imports: ~10 s on 2 cores
def test_parallel_processes_flushing_into_one_sqlite_store_wait_for_each_other(sqlite_store):
    client = MlflowClient(sqlite_store)
    runs = [two_runs(client)[0] for _ in range(3)]
    env = cli_env({"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, sqlite_store, run_id], env=env,
                         stderr=subprocess.PIPE, text=True)
        for run_id in runs
    ]  # fmt: skip
    log_with_mlflow(client, runs[0], [("mlflow", float(s), T, s) for s in range(3000)])
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    for run_id in runs:
        history = client.get_metric_history(run_id, "cost")
        assert sorted(m.step for m in history) == list(range(10000))
        assert client.get_run(run_id).data.tags["progress.epoch"] == "9999"
    assert len(client.get_metric_history(runs[0], "mlflow")) == 3000
