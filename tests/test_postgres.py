"""PostgreSQL directly as the store (``tracking.uri=postgresql://...``, no server): parallel
jobs on a fresh database, the password kept out of every file and the console, and one-line
errors for a database that is down or refuses us."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import cost_history, forked_workers, run_cli, runs_of, sweep_runs, train_into
from helpers.forked import train_together
from helpers.servers import free_port
from pipeline.config import CONF_DIR, register_configs
from pipeline.errors import PipelineError
from pipeline.tracking.store.password import move_password

SEEDS = [str(seed) for seed in range(1, 9)]


def without_password(uri: str, password: str) -> str:
    return uri.replace(f":{password}@", "@")


@pytest.mark.slow
def test_eight_processes_started_together_on_a_fresh_database_all_finish(postgres, tmp_path):
    """Eight processes, each with its own connections, create MLflow's tables at once: forked
    from one that imported the pipeline (tests/helpers/forked.py), so they start within
    milliseconds of each other instead of seconds apart."""
    uri = postgres.create_database("race")
    bare = without_password(uri, postgres.password)  # the password comes from PGPASSWORD
    env = {"PGPASSWORD": postgres.password}
    jobs = [[f"seed={seed}", "epochs=5"] for seed in SEEDS]
    statuses, errors = train_together(bare, jobs, env, tmp_path / "errors")
    assert statuses == [0] * 8, errors
    runs = runs_of(uri)
    assert sorted(r.data.params["seed"] for r in runs) == sorted(SEEDS)
    assert [r.info.status for r in runs] == ["FINISHED"] * 8


@pytest.mark.slow
def test_a_parallel_sweep_on_a_fresh_database_finishes_and_keeps_the_password_out(
    postgres, tmp_path
):
    uri = postgres.create_database("sweep")  # the password in the URI, on the command line
    seeds = ",".join(SEEDS[:4])
    result = run_cli("-m", f"seed={seeds}", "epochs=20", "hydra/launcher=joblib",
                     "hydra.launcher.n_jobs=4", f"tracking.uri={uri}", cwd=tmp_path,
                     env=forked_workers(tmp_path / "bin"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    parent, runs = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert [r.info.status for r in runs] == ["FINISHED"] * 4
    assert all(len(cost_history(uri, r.info.run_id)) == 21 for r in runs)

    password = postgres.password
    assert password not in result.stdout + result.stderr
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and password.encode() in
              p.read_bytes()]  # fmt: skip
    assert leaked == []  # multirun/ (Hydra's files), mlruns/ (the artifacts)
    client = MlflowClient(uri)
    for run in [parent, *runs]:
        texts = [*run.data.params.values(), *run.data.tags.values(), run.info.run_name]
        assert not any(password in text for text in texts)
    config = client.download_artifacts(runs[0].info.run_id, "config.yaml", str(tmp_path / "dl"))
    assert without_password(uri, password) in Path(config).read_text()  # where, not the secret


STORE_ERRORS = [
    ("wrong password", "postgresql://postgres:wrong@127.0.0.1:{port}/{db}",
     "refused user 'postgres' (password authentication failed"),
    ("down", "postgresql://postgres:{password}@127.0.0.1:{free}/{db}", "is unreachable"),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "message"), [case[1:] for case in STORE_ERRORS],
                         ids=[case[0] for case in STORE_ERRORS])  # fmt: skip
def test_a_database_that_cannot_be_used_is_one_line_and_no_run(postgres, tmp_path, uri, message):
    good = postgres.create_database("errors", migrated=True)
    database = good.rsplit("/", 1)[1]
    uri = uri.format(port=postgres.port, free=free_port(), password=postgres.password, db=database)
    with pytest.raises(PipelineError) as raised:  # a run, in this process
        train_into(uri, "epochs=5")
    assert message in str(raised.value)
    assert "Fix:" in str(raised.value)
    sweep = run_cli("-m", "seed=1,2", "epochs=5", f"tracking.uri={uri}", cwd=tmp_path, timeout=120)
    assert sweep.returncode == 1  # a sweep, as a user runs it: one line, no parent run
    (line,) = sweep.stderr.splitlines()
    assert message in line
    assert "Fix:" in line
    for output in (str(raised.value), sweep.stdout, sweep.stderr):
        assert postgres.password not in output
    assert runs_of(good) == []  # nothing created, nothing RUNNING


def test_a_password_in_tracking_uri_moves_to_pgpassword_before_hydra_writes(monkeypatch):
    # Recorded, so that the value move_password sets is undone after the test (a delenv of
    # an unset variable records nothing: the password would stay in this worker's environment
    # and every process it starts afterwards).
    monkeypatch.setenv("PGPASSWORD", "before")
    monkeypatch.delenv("PGPASSWORD")
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            "config",
            overrides=["tracking.uri=postgresql://mlflow:p%40ss-w0rd@db:5432/runs", "seed=2"],
            return_hydra_config=True,
        )
    move_password(cfg)
    assert os.environ["PGPASSWORD"] == "p@ss-w0rd"  # percent-decoded, as libpq wants it
    assert cfg.tracking.uri == "postgresql://mlflow@db:5432/runs"
    assert "tracking.uri=postgresql://mlflow@db:5432/runs" in cfg.hydra.overrides.task
    assert "w0rd" not in OmegaConf.to_yaml(cfg)  # what Hydra saves in .hydra/ and multirun.yaml
