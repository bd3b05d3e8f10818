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


@pytest.mark.slow  # seconds: in CI, not the inner loop
def test_a_new_store_copied_from_the_template_is_the_store_mlflow_builds(tmp_path, monkeypatch):
    """The second new store on a machine is a copy of the cached empty one: the same tables,
    indexes, schema revision and rows (the Default experiment where MLflow puts it)."""
    import sqlite3

    from mlflow.tracking import MlflowClient

    from pipeline.tracking.store.access import open_for_writing

    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    MlflowClient(tracking_uri=sqlite_uri(tmp_path / "mlflows")).search_experiments()
    open_for_writing(sqlite_uri(tmp_path / "first"))  # builds the template, as MLflow would
    (template,) = (tmp_path / "cache").iterdir()
    assert template.name.startswith("empty-mlflow-")
    open_for_writing(sqlite_uri(tmp_path / "copied"))

    def contents(directory: str) -> tuple[dict, list, list]:
        """Each table's columns and indexes (not MLflow's DDL text, nor the indexes' order,
        which vary with what its migrations ran before in the process), the schema revision,
        the experiments."""
        with sqlite3.connect(tmp_path / directory / "mlflow.db") as db:
            names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            tables = {
                name: (
                    db.execute(f"PRAGMA table_info('{name}')").fetchall(),
                    sorted(i[1:] for i in db.execute(f"PRAGMA index_list('{name}')")),
                )
                for name in names
            }
            revision = db.execute("SELECT * FROM alembic_version").fetchall()
            experiments = db.execute(
                "SELECT experiment_id, name, artifact_location, lifecycle_stage FROM experiments"
            ).fetchall()
        return tables, revision, experiments

    assert contents("copied") == contents("first") == contents("mlflows")
    assert contents("copied")[2] == [(0, "Default", str(tmp_path / "mlruns" / "0"), "active")]
    assert not list((tmp_path / "copied").glob(".*.new"))  # nothing half-made left beside it


def test_a_secret_set_after_a_first_redaction_is_masked_too(monkeypatch):
    """The secret values are cached while the environment stays as it is: a new or changed
    secret-looking variable is masked from the next text on, and a removed one no longer."""
    from pipeline.tracking.store.redact import MASK, redact

    monkeypatch.setenv("PIPELINE_TEST_TOKEN", "first-secret")
    assert redact("a first-secret b") == f"a {MASK} b"
    monkeypatch.setenv("PIPELINE_TEST_TOKEN", "second-secret")
    assert redact("first-secret second-secret") == f"first-secret {MASK}"
    monkeypatch.delenv("PIPELINE_TEST_TOKEN")
    assert redact("second-secret") == "second-secret"
