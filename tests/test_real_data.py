"""Real data end to end: quality, a scikit-learn oracle, mini-batches, logged models, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from conftest import cost_history, run_cli, sqlite_uri, train_into
from pipeline import predict as predict_command
from pipeline.config import compose_config
from pipeline.config.build import build
from pipeline.core.data import standardization
from pipeline.core.model import Standardize
from pipeline.errors import DataError
from pipeline.predict import predict


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory: pytest.TempPathFactory):
    """``data=iris`` with the shipped defaults, in the default store of a directory."""
    cwd = tmp_path_factory.mktemp("iris")
    uri = sqlite_uri(cwd / "mlruns")
    _, run = train_into(uri, "data=iris")
    return cwd, uri, run


def test_iris_reaches_090_test_accuracy_with_the_defaults(iris_run):
    _, _, run = iris_run
    assert run.data.metrics["test_accuracy"] >= 0.9
    assert run.data.params["data.standardize"] == "True"


def test_iris_logs_validation_metrics_every_epoch_and_a_test_report(iris_run):
    _, uri, run = iris_run
    for key in ("cost", "accuracy", "val_cost", "val_accuracy"):
        assert len(cost_history(uri, run.info.run_id, key)) == 1001, key
    client = MlflowClient(tracking_uri=uri)
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"test_report.json", "confusion_matrix.png"} <= files
    report = client.download_artifacts(run.info.run_id, "test_report.json")
    assert set(pd.read_json(report).columns) >= {"setosa", "versicolor", "virginica"}
    png = client.download_artifacts(run.info.run_id, "confusion_matrix.png")
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_split_is_an_mlflow_dataset_found_by_its_digest(iris_run):
    _, uri, run = iris_run
    digest = run.data.tags["data.digest"][:32]
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"iris/train", "iris/validation", "iris/test"}
    for name, context, rows in (("train", "training", 90), ("validation", "validation", 30),
                                ("test", "testing", 30)):  # fmt: skip
        dataset = inputs[f"iris/{name}"]
        assert [(t.key, t.value) for t in dataset.tags] == [("mlflow.data.context", context)]
        assert dataset.dataset.digest == digest
        assert dataset.dataset.source_type == "code"
        assert json.loads(dataset.dataset.source) == {"tags": {"source": "sklearn:iris"}}
        assert json.loads(dataset.dataset.profile)["features_shape"] == [rows, 4]
    client = MlflowClient(tracking_uri=uri)
    found = client.search_runs([run.info.experiment_id], f"datasets.digest = '{digest}'")
    assert [r.info.run_id for r in found] == [run.info.run_id]


@pytest.mark.slow
def test_lbfgs_matches_scikit_learn_unpenalized_multinomial(train_in_process):
    _, run = train_in_process("data=iris", "optim=lbfgs", "epochs=50")
    data = build("data", compose_config(["data=iris"]).data)  # the run's split
    scaled = Standardize(*standardization(data.train))(data.train.features).detach().numpy()
    labels = data.train.labels.numpy()
    peer = LogisticRegression(C=np.inf, max_iter=100_000, tol=1e-12).fit(scaled, labels)
    oracle = log_loss(labels, peer.predict_proba(scaled))
    assert run.data.metrics["final_cost"] == pytest.approx(oracle, abs=1e-3)


def test_mini_batches_are_seeded_and_differ_from_full_batch(train_in_process):
    runs = [train_in_process("data=wine", "batch_size=16", "epochs=5")[1] for _ in range(2)]
    _, full = train_in_process("data=wine", "epochs=5")
    uri = train_in_process.uri
    first, second = (cost_history(uri, r.info.run_id) for r in runs)
    assert first == second
    assert first != cost_history(uri, full.info.run_id)


def test_mlp_and_adamw_train(train_in_process):
    outcome, run = train_in_process(
        "data=wine", "model=mlp", "model.hidden=[16,8]", "optim=adamw", "epochs=100"
    )
    assert run.info.status == "FINISHED"
    assert outcome.value == run.data.metrics["objective"]
    assert run.data.metrics["test_accuracy"] >= 0.85


def test_pyfunc_classifier_gives_probabilities_by_class_name(iris_run):
    import mlflow

    _, uri, run = iris_run
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/classifier")
    raw = pd.DataFrame(
        [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]],
        columns=model.metadata.get_input_schema().input_names(),
    )
    probabilities = model.predict(raw)
    assert probabilities.columns.tolist() == ["setosa", "versicolor", "virginica"]
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert probabilities.idxmax(axis=1).tolist() == ["setosa", "virginica"]


def test_predict_writes_labels_and_probabilities(iris_run, tmp_path, capfd):
    _, uri, run = iris_run
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,c,d\n5.1,3.5,1.4,0.2\n6.3,3.3,6.0,2.5\n")
    out = tmp_path / "out.csv"
    status = predict_command.main([run.info.run_id, str(rows), "--output", str(out),
                                   "--tracking-uri", uri])  # fmt: skip
    assert status == 0
    assert capfd.readouterr().err == f"Wrote 2 predictions to {out}\n"
    table = pd.read_csv(out)
    assert table.columns.tolist() == ["label", "prob_setosa", "prob_versicolor", "prob_virginica"]
    assert table["label"].tolist() == ["setosa", "virginica"]


def test_predict_reads_a_parquet_input_like_a_csv_one(iris_run, tmp_path):
    _, uri, run = iris_run
    rows = pd.DataFrame([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]], columns=list("abcd"))
    rows.to_csv(tmp_path / "rows.csv", index=False)
    rows.to_parquet(tmp_path / "rows.pq")
    from_csv = predict(run.info.run_id, str(tmp_path / "rows.csv"), uri, ",", True)
    from_parquet = predict(run.info.run_id, str(tmp_path / "rows.pq"), uri, ",", True)
    pd.testing.assert_frame_equal(from_parquet, from_csv)
    assert from_parquet["label"].tolist() == ["setosa", "virginica"]


@pytest.mark.slow
def test_csv_with_string_labels_round_trips_through_predict(tmp_path):
    rng = np.random.default_rng(0)
    kinds = np.repeat(["small", "large"], 20)
    size = np.where(kinds == "large", 10.0, 1.0) + rng.normal(0, 0.5, 40)
    pd.DataFrame({"size": size, "noise": rng.normal(0, 1, 40), "kind": kinds}).to_csv(
        tmp_path / "train.csv", index=False
    )
    uri = sqlite_uri(tmp_path / "mlruns")
    data = f"data.path={tmp_path / 'train.csv'}"
    _, run = train_into(uri, "data=csv", data, "data.label=kind", "epochs=200")
    train_input = {i.dataset.name: i for i in run.inputs.dataset_inputs}["csv/train"]
    assert train_input.dataset.source_type == "local"
    assert json.loads(train_input.dataset.source) == {"uri": str(tmp_path / "train.csv")}
    (tmp_path / "new.csv").write_text("size,noise\n0.8,0.1\n9.5,-0.3\n")
    predicted = run_cli(run.info.run_id, "new.csv", cwd=tmp_path, module="pipeline.predict")
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.splitlines()[0] == "label,prob_large,prob_small"
    assert [line.split(",")[0] for line in predicted.stdout.splitlines()[1:]] == ["small", "large"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "CSV error: file not found: "),
    ("a,b,label\n1,x,0\n2,3,1\n", "line 2, column 'b': 'x' is not a number"),
])  # fmt: skip
def test_a_bad_training_file_fails_before_any_run(tmp_path, content, message):
    if content is not None:
        (tmp_path / "in.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        train_into(sqlite_uri(tmp_path / "mlruns"), "data=csv", f"data.path={tmp_path / 'in.csv'}")
    assert not (tmp_path / "mlruns").exists()


def test_predict_rejects_a_feature_count_mismatch(iris_run, tmp_path):
    _, uri, run = iris_run
    (tmp_path / "two.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="has 2 columns, the model expects 4 features"):
        predict(run.info.run_id, str(tmp_path / "two.csv"), uri, ",", True)


def test_logging_a_model_skips_mlflows_dependency_scan_and_loading_it_still_checks(
    store, monkeypatch
):
    """The requirements logged are this environment's versions: MLflow's check of them against
    this environment (its first call scans every installed distribution) is not paid while
    logging; loading the model, which may happen in another environment, still checks."""
    import mlflow
    import torch
    from mlflow.utils import requirements_utils

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)  # as in a new process
    _, run = train_into(store, "epochs=5")
    assert requirements_utils._MODULES_TO_PACKAGES is None  # never scanned
    client = MlflowClient(tracking_uri=store)
    logged = client.download_artifacts(run.info.run_id, "classifier/requirements.txt")
    assert Path(logged).read_text().split() == [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
    ]
    mlflow.set_tracking_uri(store)
    mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/classifier")
    assert requirements_utils._MODULES_TO_PACKAGES is not None  # loading checked them


def test_data_parquet_trains_like_the_same_table_built_in(iris_run, tmp_path):
    """``data=parquet`` with the shipped defaults, on iris written to a Parquet file with text
    labels: the same splits, digest, costs and metrics as ``data=iris``."""
    from sklearn.datasets import load_iris

    _, iris_uri, iris = iris_run
    bunch = load_iris()
    table = pd.DataFrame(bunch.data.astype(np.float32), columns=bunch.feature_names)
    table["species"] = bunch.target_names[bunch.target]
    path = tmp_path / "iris.parquet"
    table.to_parquet(path)
    uri = sqlite_uri(tmp_path / "mlruns")
    outcome, run = train_into(uri, "data=parquet", f"data.path={path}", "data.label=species")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["data"], params["data.path"], params["data.label"]) == (
        "parquet",
        str(path),
        "species",
    )
    assert (params["data.features"], params["data.standardize"]) == ("None", "True")
    assert run.data.tags["data.digest"] == iris.data.tags["data.digest"]
    assert cost_history(uri, run.info.run_id) == cost_history(iris_uri, iris.info.run_id)
    assert run.data.metrics == iris.data.metrics
    assert run.data.metrics["test_accuracy"] >= 0.9
    assert outcome.value == run.data.metrics["objective"]
    inputs = {i.dataset.name: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"parquet/train", "parquet/validation", "parquet/test"}
    assert json.loads(inputs["parquet/train"].source) == {"uri": str(path)}
