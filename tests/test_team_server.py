"""The team's tracking server on PostgreSQL, for real: ``python -m pipeline.server`` on a fresh
database; a parallel sweep, a rerun, predictions and the UI through it; a restart in the
middle of a run; and its one-line errors before anything starts."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import cost_history, run_cli, runs_of, start_cli, sweep_runs
from servers import free_port, listening, live_members, start_server, stop_group

SEEDS = [str(seed) for seed in range(1, 9)]


@dataclass
class TeamServer:
    """``python -m pipeline.server`` on a free port: its URL, and how to (re)start and stop it."""

    url: str
    port: int
    password: str
    artifacts: Path
    command: list[str]
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = start_server(self.command, self.artifacts.parent, self.log, self.port)

    def stop(self) -> None:
        """Stop it by its PID (its process group), and make sure nothing of it is left."""
        stop_group(self.process)
        assert not live_members(self.process.pid), "the server left processes behind"
        assert not listening(self.port)

    def command_lines(self) -> list[str]:
        """What ``ps`` shows of the server's processes."""
        return [Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                for pid in live_members(self.process.pid)]  # fmt: skip


@pytest.fixture(scope="module")
def team_server(postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    """The documented command on a fresh database, the password in its URI."""
    root = tmp_path_factory.mktemp("team")
    port = free_port()
    uri = postgres.create_database("team")
    command = [sys.executable, "-m", "pipeline.server", "--backend-store-uri", uri,
               "--artifacts-destination", str(root / "artifacts"), "--port", str(port),
               "--workers", "1"]  # fmt: skip
    server = TeamServer(
        f"http://127.0.0.1:{port}", port, postgres.password, root / "artifacts", command,
        root / "server.log",
    )  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sweep(team_server, tmp_path_factory: pytest.TempPathFactory):
    """8 jobs, 4 at a time (joblib), logged through the server: (the process, parent, runs)."""
    cwd = tmp_path_factory.mktemp("sweep")
    jobs = ["-m", f"seed={','.join(SEEDS)}", "epochs=20"]
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"]
    result = run_cli(*jobs, *launcher, f"tracking.uri={team_server.url}", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert not (cwd / "mlruns").exists()  # nothing went to a local store
    parent, runs = sweep_runs(team_server.url)
    return result, parent, runs


@pytest.mark.slow
def test_a_parallel_sweep_through_the_server_loses_nothing(team_server, sweep, tmp_path):
    _, parent, runs = sweep
    assert parent.info.status == "FINISHED"
    assert [r.info.status for r in runs] == ["FINISHED"] * 8
    assert sorted(r.data.params["seed"] for r in runs) == sorted(SEEDS)
    assert all(len(cost_history(team_server.url, r.info.run_id)) == 21 for r in runs)
    client = MlflowClient(team_server.url)
    for run in runs:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "train.log", "hydra"} <= names
    summary = Path(client.download_artifacts(parent.info.run_id, "summary.txt", str(tmp_path)))
    assert summary.read_text().count("FINISHED") == 8
    assert parent.data.metrics["jobs_finished"] == 8
    # The artifacts went through the server's proxy to its destination.
    assert len(list(team_server.artifacts.glob("*/*/artifacts/train.log"))) == 8


@pytest.mark.slow
def test_rerun_predict_and_ui_work_through_the_server(team_server, sweep, tmp_path):
    _, parent, _ = sweep
    best = parent.data.tags["best_run_id"]
    env = {"MLFLOW_TRACKING_URI": team_server.url}
    rerun = run_cli(best, module="pipeline.rerun", cwd=tmp_path, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "reproduced: 21/21 cost values identical" in rerun.stdout
    (tmp_path / "in.csv").write_text("a,b,c,d\n1,2,1,1\n2,1,3,2\n")
    predict = run_cli(best, "in.csv", module="pipeline.predict", cwd=tmp_path, env=env)
    assert predict.returncode == 0, predict.stderr
    lines = predict.stdout.splitlines()
    assert lines[0] == "label,prob_0,prob_1,prob_2"
    assert len(lines) == 3
    ui = run_cli("--tracking-uri", team_server.url, module="pipeline.ui", cwd=tmp_path)
    assert ui.returncode == 0, ui.stderr
    assert f"Runs are tracked by the server at {team_server.url}: open it there." in ui.stdout
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_the_database_password_stays_out_of_sight(team_server, sweep):
    result, _, runs = sweep
    assert not any(team_server.password in line for line in team_server.command_lines())
    assert team_server.password not in team_server.log.read_text()  # the server's console
    assert team_server.password not in result.stdout + result.stderr
    for run in runs:
        texts = [*run.data.params.values(), *run.data.tags.values()]
        assert not any(team_server.password in text for text in texts)


@pytest.mark.slow
def test_a_server_restart_in_the_middle_of_a_run_loses_nothing(team_server, tmp_path):
    run = start_cli("epochs=10000", "log_every=5000", "tracking.flush_every_s=0.2",
                    "tracking.experiment=restart", f"tracking.uri={team_server.url}",
                    cwd=tmp_path)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any(cost_history(team_server.url, r.info.run_id) for r in
                      runs_of(team_server.url, "restart")):  # fmt: skip
            assert time.monotonic() < deadline, "the run logged nothing in 120 s"
            assert run.poll() is None, run.communicate()
            time.sleep(0.2)
        team_server.stop()  # while the run trains: its next flush finds no server
        time.sleep(2)
        team_server.start()  # same port
        stdout, stderr = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    assert "Retrying" in stdout  # MLflow's client waited for the server (a logged warning)
    (found,) = runs_of(team_server.url, "restart")
    assert found.info.status == "FINISHED"
    history = MlflowClient(team_server.url).get_metric_history(found.info.run_id, "cost")
    assert sorted(m.step for m in history) == list(range(10001))  # all there, none twice


SERVER_ERRORS = [
    ("wrong password", "postgresql://postgres:wrong@127.0.0.1:{port}/postgres",
     "refused user 'postgres' (password authentication failed"),
    ("down", "postgresql://postgres@127.0.0.1:{free}/postgres", "is unreachable"),
    ("no database", "postgresql://postgres:{password}@127.0.0.1:{port}/nosuchdb",
     "has no database 'nosuchdb'"),
    ("no driver", "postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres",
     "No PostgreSQL driver"),
    ("not postgres", "sqlite:///mlflow.db", "must name a PostgreSQL database"),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "message"), [case[1:] for case in SERVER_ERRORS],
                         ids=[case[0] for case in SERVER_ERRORS])  # fmt: skip
def test_a_server_that_cannot_work_is_one_line_before_it_starts(postgres, tmp_path, uri, message):
    uri = uri.format(port=postgres.port, free=free_port(), password=postgres.password)
    port = free_port()
    args = ["--backend-store-uri", uri, "--artifacts-destination", "artifacts", "--port", str(port)]
    result = run_cli(*args, module="pipeline.server", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert message in line
    assert "Fix:" in line
    assert postgres.password not in line
    assert not listening(port)
