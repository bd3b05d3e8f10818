"""The default run is the reference experiment, tracked: numbers, params, metrics, artifacts."""

from __future__ import annotations

from pathlib import Path

import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import REFERENCE_OUTPUT, cost_history, runs_of, sqlite_uri
from pipeline.core.data import TOY_FEATURES, TOY_LABELS


@pytest.fixture(scope="module")
def default_run(reference_run):
    """``python -m pipeline.train`` with no overrides, from a fresh directory (made once per
    session: test_rerun reruns a copy of it)."""
    result, cwd = reference_run
    assert result.returncode == 0, result.stderr
    uri = sqlite_uri(cwd / "mlruns")
    (run,) = runs_of(uri)
    return result, uri, run, cwd


def test_prints_the_reference_lines_exactly(default_run):
    result, *_ = default_run
    expected = REFERENCE_OUTPUT.read_text().splitlines()
    printed = [line for line in result.stdout.splitlines() if line.startswith("Epoch")]
    assert printed == expected


def test_piped_output_has_no_control_characters_and_ends_with_the_run_address(default_run):
    result, *_ = default_run
    for stream in (result.stdout, result.stderr):
        assert "\r" not in stream  # the live progress line is for terminals only
        assert "\x1b" not in stream
    lines = result.stdout.splitlines()
    assert lines[-2].startswith("Run 'default' finished: final_cost ")
    assert lines[-1].startswith("Run id ")
    assert "view it at http://127.0.0.1:5000/#/experiments/1/runs/" in lines[-1]
    assert "python -m pipeline.ui" in lines[-1]


def test_mlflow_adds_no_lines_of_its_own(default_run):
    result, *_ = default_run
    lines = result.stdout.splitlines() + result.stderr.splitlines()
    assert [line for line in lines if "mlflow" in line.lower() or "View run" in line] == []
    assert len(result.stdout.splitlines()) == 13  # 11 cost lines, the summary, the address


def test_store_is_sqlite_under_mlruns_of_the_working_dir(default_run):
    _, _, run, cwd = default_run
    assert (cwd / "mlruns" / "mlflow.db").is_file()
    artifact_dir = Path(run.info.artifact_uri.removeprefix("file://"))
    assert artifact_dir.is_relative_to(cwd / "mlruns")
    assert not (cwd / "outputs" / "mlruns").exists()


def test_run_is_finished_with_a_readable_name(default_run):
    _, _, run, _ = default_run
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "default"
    assert run.data.tags["hydra.overrides"] == ""


def test_every_resolved_config_value_is_a_param(default_run):
    _, _, run, _ = default_run
    assert run.data.params == {
        "data": "toy",
        "model": "softmax",
        "optim": "sgd",
        "scheduler": "none",
        "data._target_": "pipeline.core.data.toy",
        "data.val_fraction": "0.0",
        "data.test_fraction": "0.0",
        "data.split_seed": "0",
        "data.standardize": "False",
        "batch_size": "None",
        "model._target_": "torch.nn.Linear",
        "model.bias": "True",
        "optim._target_": "torch.optim.SGD",
        "optim.lr": "0.1",
        "optim.momentum": "0.0",
        "optim.nesterov": "False",
        "optim.weight_decay": "0.0",
        "scheduler._target_": "None",
        "seed": "1",
        "epochs": "1000",
        "log_every": "100",
        "device": "auto",
        "threads": "1",
        "early_stopping.patience": "None",
        "early_stopping.monitor": "val_cost",
        "early_stopping.mode": "min",
        "early_stopping.min_delta": "0.0",
        "early_stopping.restore_best": "True",
        "loss.class_weights": "None",
        "loss.label_smoothing": "0.0",
        "cv.folds": "None",
        "cv.stratified": "True",
    }


def test_cost_and_accuracy_at_every_epoch(default_run):
    _, uri, run, _ = default_run
    client = MlflowClient(tracking_uri=uri)
    for key in ("cost", "accuracy"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == list(range(1001))
    costs = cost_history(uri, run.info.run_id)
    expected = [float(line.split()[-1]) for line in REFERENCE_OUTPUT.read_text().splitlines()]
    assert [round(costs[e], 6) for e in range(0, 1001, 100)] == expected
    assert run.data.metrics["final_accuracy"] == 1.0
    assert run.data.metrics["final_cost"] == pytest.approx(0.254477, abs=1e-6)


def test_config_model_and_log_are_artifacts(default_run):
    _, uri, run, _ = default_run
    client = MlflowClient(tracking_uri=uri)
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "hydra", "train.log"} <= top
    assert not {"test_report.json", "confusion_matrix.png"} & top  # toy has no test split
    hydra_files = {a.path for a in client.list_artifacts(run.info.run_id, "hydra")}
    assert hydra_files == {"hydra/config.yaml", "hydra/hydra.yaml", "hydra/overrides.yaml"}
    log_text = Path(client.download_artifacts(run.info.run_id, "train.log")).read_text()
    assert "Epoch 1000/1000 Cost: 0.254148" in log_text


def test_logged_model_reloads_with_equal_outputs(default_run):
    _, uri, run, _ = default_run
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    assert isinstance(model, torch.nn.Linear)
    features, labels = torch.tensor(TOY_FEATURES, dtype=torch.float32), torch.tensor(TOY_LABELS)
    logits = model(features).detach()
    costs = torch.nn.functional.cross_entropy(logits, labels).item()
    assert costs == run.data.metrics["final_cost"]
    info = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/model")
    assert info.signature is not None
    assert info.saved_input_example_info is not None
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(pyfunc.predict(features.numpy()), logits.numpy())
