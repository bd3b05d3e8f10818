"""Where runs go: tracking.uri and $MLFLOW_TRACKING_URI override the default ./mlruns store."""

from __future__ import annotations

import pytest

from conftest import compose_job, cost_history, runs_of, sqlite_uri, train_into
from pipeline.config import validate
from pipeline.errors import PipelineError
from pipeline.stage import train
from pipeline.tracking.store.access import default_tracking_uri, prepare_store, resolve_tracking_uri


def test_tracking_uri_override_and_experiment_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = sqlite_uri(tmp_path / "elsewhere")
    _, run = train_into(uri, "tracking.experiment=mine", "epochs=20")
    (found,) = runs_of(uri, "mine")
    assert found.info.run_id == run.info.run_id
    assert len(cost_history(uri, run.info.run_id)) == 21
    assert run.info.artifact_uri.startswith((tmp_path / "elsewhere" / "artifacts").as_uri())
    assert not [key for key in run.data.params if key.startswith(("tracking.", "sweep."))]
    assert not (tmp_path / "mlruns").exists()


def test_environment_variable_points_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = sqlite_uri(tmp_path / "from-env")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg, job = compose_job("epochs=20")
    validate(cfg)
    train(cfg, job)
    assert len(runs_of(uri)) == 1
    assert not (tmp_path / "mlruns").exists()


def test_resolution_order(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert resolve_tracking_uri(None) == default_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////env.db")
    assert resolve_tracking_uri(None) == "sqlite:////env.db"
    assert resolve_tracking_uri("sqlite:////cfg.db") == "sqlite:////cfg.db"


def test_prepare_store_is_idempotent(store):
    assert prepare_store(store, "twice") == prepare_store(store, "twice")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://127.0.0.1:9", "Tracking server http://127.0.0.1:9 is unreachable"),
        ("nosuchscheme://x", "Tracking store error at nosuchscheme://x"),
        ("sqlite:////proc/forbidden/mlflow.db", "Tracking store error at sqlite:////proc/"),
    ],
)
def test_an_unusable_store_is_one_clear_error(uri, message):
    with pytest.raises(PipelineError) as raised:
        prepare_store(uri, "any")
    assert message in str(raised.value)
    assert "Fix:" in str(raised.value)
    assert "\n" not in str(raised.value)
