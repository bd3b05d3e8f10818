"""Where runs go: tracking.uri and $MLFLOW_TRACKING_URI override the default ./mlruns store."""

from __future__ import annotations

import pytest

from conftest import cost_history, run_cli, runs_of, sqlite_uri
from pipeline.tracking import default_tracking_uri, prepare_store, resolve_tracking_uri


def test_tracking_uri_override_and_experiment_name(tmp_path):
    uri = sqlite_uri(tmp_path / "elsewhere")
    result = run_cli(f"tracking.uri={uri}", "tracking.experiment=mine", "epochs=20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run,) = runs_of(uri, "mine")
    assert len(cost_history(uri, run.info.run_id)) == 21
    assert run.info.artifact_uri.startswith((tmp_path / "elsewhere" / "artifacts").as_uri())
    assert not [key for key in run.data.params if key.startswith("tracking.")]
    assert not (tmp_path / "mlruns").exists()


def test_environment_variable_points_elsewhere(tmp_path):
    uri = sqlite_uri(tmp_path / "from-env")
    result = run_cli("epochs=20", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr
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


def test_unreachable_server_is_one_clear_error_before_any_run(tmp_path):
    result = run_cli("tracking.uri=http://127.0.0.1:9", cwd=tmp_path)
    assert result.returncode == 1
    assert "Tracking server http://127.0.0.1:9 is unreachable" in result.stderr
    assert "Fix:" in result.stderr
    assert "Epoch" not in result.stdout


@pytest.mark.parametrize("uri", ["nosuchscheme://x", "sqlite:////proc/forbidden/mlflow.db"])
def test_unusable_store_is_one_clear_error(tmp_path, uri):
    result = run_cli(f"tracking.uri={uri}", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Fix: check tracking.uri or MLFLOW_TRACKING_URI" in result.stderr
