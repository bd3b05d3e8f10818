"""The team's tracking server on PostgreSQL, for real: ``python -m pipeline.server`` on a fresh
database, logins on, started once for this file; a user's parallel sweep through it (one, read
by every test that only reads), then compare, register, rerun, predict and the UI as that user;
a restart in the middle of a run; its one-line errors before anything starts; and its users:
what each may do, and who is refused. Commands run in this process unless the process is the
point (a launcher's workers, a signal, the console, the exit status)."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import (
    cost_history,
    epochs_lasting,
    forked_workers,
    run_cli,
    runs_of,
    sqlite_uri,
    start_cli,
    sweep_runs,
    train_into,
)
from helpers.servers import free_port, listening, live_members, start_server, stop_group
from pipeline import compare, predict, register, rerun, resume, ui
from pipeline.errors import PipelineError

SEEDS = [str(seed) for seed in range(1, 9)]
ADMIN_PASSWORD = "admin-pass-0123456789"
SERVER_SECRETS = {
    "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32,
}


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
        self.process = start_server(
            self.command, self.artifacts.parent, self.log, self.port, env=SERVER_SECRETS
        )

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
    """The documented command on a fresh database, the password in its URI, logins on; this
    module's clients log in as its admin unless a test says otherwise."""
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
    before = dict(os.environ)
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
    try:
        yield server
    finally:
        os.environ.clear()
        os.environ.update(before)
        server.stop()


def login(user: str, password: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}


@pytest.fixture
def as_user(monkeypatch):
    """``as_user(name, password)``: this process logs in as that user until the test ends."""

    def log_in(user: str, password: str) -> None:
        for name, value in login(user, password).items():
            monkeypatch.setenv(name, value)

    return log_in


def call(capsys, command, *args: str) -> str:
    """``command.main(args)`` in this process: its stdout (it must return 0)."""
    assert command.main(list(args)) == 0
    return capsys.readouterr().out


def compared_runs(csv_text: str) -> set[str]:
    """The run ids of ``compare --format csv``'s table."""
    return {row["run_id"] for row in csv.DictReader(io.StringIO(csv_text))}


@pytest.fixture(scope="module")
def users(team_server) -> dict[str, str]:
    """alice trains, bob (the server's default READ) reads, carol is denied alice's runs."""
    from mlflow.server import get_app_client

    admin = get_app_client("basic-auth", tracking_uri=team_server.url)
    passwords = {name: f"{name}-password-0123" for name in ("alice", "bob", "carol")}
    for name, password in passwords.items():
        admin.create_user(username=name, password=password)
    return passwords


@pytest.fixture(scope="module")
def sweep(team_server, users, tmp_path_factory: pytest.TempPathFactory):
    """alice's sweep in her own experiment: 8 jobs, 4 at a time (joblib's worker processes),
    logged through the server as alice: (its output, parent, runs). Only read by the tests."""
    cwd = tmp_path_factory.mktemp("sweep")
    jobs = ["-m", f"seed={','.join(SEEDS)}", "epochs=20", "tracking.experiment=alice"]
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"]
    env = {**login("alice", users["alice"]), **forked_workers(cwd / "bin")}
    result = run_cli(*jobs, *launcher, f"tracking.uri={team_server.url}", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    assert not (cwd / "mlruns").exists()  # nothing went to a local store
    parent, runs = sweep_runs(team_server.url, "alice")
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
    experiment = team_server.artifacts / parent.info.experiment_id
    assert len(list(experiment.glob("*/artifacts/train.log"))) == 8


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
def test_a_user_compares_registers_reruns_predicts_and_opens_the_ui_as_themselves(
    team_server, users, sweep, as_user, capsys, tmp_path, monkeypatch
):
    _, parent, runs = sweep
    as_user("alice", users["alice"])
    url = ["--tracking-uri", team_server.url]
    table = call(capsys, compare, parent.info.run_id, "--format", "csv", *url)
    assert len(table.strip().splitlines()) == 9  # a header and 8 runs
    assert compared_runs(table) == {r.info.run_id for r in runs}
    best = parent.data.tags["best_run_id"]
    registered = call(capsys, register, parent.info.run_id, "--name", "alice-model", *url)
    assert registered.splitlines()[0].startswith(f"Registered run {best} ")
    assert registered.splitlines()[1:] == [
        "as alice-model version 1, alias 'champion' (new)",
        "models:/alice-model@champion",
    ]
    again = call(capsys, rerun, best, *url)  # the rerun itself trains in a child process
    assert "reproduced: 21/21 cost values identical" in again
    rows = tmp_path / "in.csv"
    rows.write_text("a,b,c,d\n1,2,1,1\n2,1,3,2\n")
    by_id = call(capsys, predict, best, str(rows), *url).splitlines()
    assert by_id[0] == "label,prob_0,prob_1,prob_2"
    assert len(by_id) == 3
    by_alias = call(capsys, predict, "models:/alice-model@champion", str(rows), *url)
    assert by_alias.splitlines() == by_id  # the alias is the best run's model
    listed = call(capsys, resume, "--list", "--experiment", "alice", *url)
    assert listed == "No interrupted runs in experiment 'alice'.\n"
    monkeypatch.chdir(tmp_path)
    opened = call(capsys, ui, *url)
    assert f"Runs are tracked by the server at {team_server.url}: open it there." in opened
    assert not (tmp_path / "mlruns").exists()


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
        team_server.start()  # same port; it answers seconds later: the run's flushes wait
        stdout, stderr = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    assert "Retrying" in stdout  # MLflow's client waited for the server (a logged warning)
    (found,) = runs_of(team_server.url, "restart")
    assert found.info.status == "FINISHED"
    history = MlflowClient(team_server.url).get_metric_history(found.info.run_id, "cost")
    assert sorted(m.step for m in history) == list(range(10001))  # all there, none twice


@pytest.mark.slow
def test_an_interrupted_run_resumes_through_the_server(team_server, tmp_path, capfd):
    job = ["data=iris", "batch_size=16", "checkpoint.every_s=0.5", "tracking.experiment=resume"]
    job.append(f"epochs={max(epochs_lasting(3, *job), 1000)}")  # seconds past its checkpoint
    run = start_cli(*job, "tracking.flush_every_s=0.5", f"tracking.uri={team_server.url}",
                    cwd=tmp_path)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any("checkpoint" in r.data.tags for r in runs_of(team_server.url, "resume")):
            assert time.monotonic() < deadline, "no checkpoint in 120 s"
            assert run.poll() is None, run.communicate()
            time.sleep(0.3)
        run.send_signal(signal.SIGINT)
        expected, _ = train_into(sqlite_uri(tmp_path / "plain"), *job)  # meanwhile, here
        run.communicate(timeout=120)
    finally:
        run.kill()
    (stopped,) = runs_of(team_server.url, "resume")
    assert stopped.info.status == "KILLED"
    capfd.readouterr()
    assert resume.main([stopped.info.run_id, "--tracking-uri", team_server.url]) == 0
    resumed = capfd.readouterr().out  # the training child's output too
    assert f"Resuming run {stopped.info.run_name!r} ({stopped.info.run_id}) from epoch" in resumed
    (found,) = runs_of(team_server.url, "resume")
    assert found.info.status == "FINISHED"
    assert found.data.tags["resume.count"] == "1"
    assert cost_history(team_server.url, found.info.run_id) == cost_history(
        sqlite_uri(tmp_path / "plain"), expected.run_id
    )


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


AUTH_ERRORS = [
    ("no secret key", {"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD},
     "MLFLOW_FLASK_SERVER_SECRET_KEY is not set"),
    ("short admin password", {**SERVER_SECRETS, "MLFLOW_AUTH_ADMIN_PASSWORD": "short"},
     "MLFLOW_AUTH_ADMIN_PASSWORD is 5 characters long"),
    ("no admin yet", {"MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32},
     "MLFLOW_AUTH_ADMIN_PASSWORD is not set, and the server has no admin 'admin' yet"),
]  # fmt: skip


@pytest.mark.parametrize(("env", "message"), [case[1:] for case in AUTH_ERRORS],
                         ids=[case[0] for case in AUTH_ERRORS])  # fmt: skip
def test_a_server_with_logins_needs_its_secrets_first(postgres, tmp_path, env, message):
    uri = postgres.create_database("auth")
    port = free_port()
    args = ["--backend-store-uri", uri, "--artifacts-destination", "artifacts", "--port", str(port)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.server", *args], cwd=tmp_path, env={**clean, **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert message in line
    assert "Fix:" in line
    assert not listening(port)


@pytest.mark.slow
def test_without_credentials_nothing_trains_and_nothing_is_created(team_server, users, tmp_path):
    """As a user runs it: the one line on the console, and nothing else."""
    result = run_cli("epochs=5", "tracking.experiment=intruder", f"tracking.uri={team_server.url}",
                     cwd=tmp_path, env=login("", ""))  # fmt: skip
    assert result.returncode != 0
    assert refused(team_server.url) in result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert "Epoch" not in result.stdout
    assert MlflowClient(team_server.url).get_experiment_by_name("intruder") is None


def test_with_a_wrong_password_nothing_trains_and_nothing_is_created(
    team_server, users, as_user, capsys
):
    as_user("alice", "not-her-password-123")
    with pytest.raises(PipelineError) as raised:  # one line on the console: see the test above
        train_into(team_server.url, "epochs=5", "tracking.experiment=intruder")
    assert str(raised.value) == refused(team_server.url)
    assert "Epoch" not in capsys.readouterr().out
    as_user("admin", ADMIN_PASSWORD)
    assert MlflowClient(team_server.url).get_experiment_by_name("intruder") is None


def refused(url: str) -> str:
    return (
        f"Tracking server {url} refused the credentials (401). "
        "Fix: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    )


@pytest.mark.slow
def test_a_reader_reads_but_cannot_train_and_a_denied_user_sees_nothing(
    team_server, users, sweep, as_user, capsys, tmp_path
):
    from mlflow.server import get_app_client

    _, parent, runs = sweep
    url = ["--tracking-uri", team_server.url]
    as_user("bob", users["bob"])
    table = call(capsys, compare, parent.info.run_id, "--format", "csv", *url)
    assert compared_runs(table) == {r.info.run_id for r in runs}  # bob reads them all
    rows = tmp_path / "in.csv"
    rows.write_text("a,b,c,d\n1,2,1,1\n")
    predicted = call(capsys, predict, runs[0].info.run_id, str(rows), *url).splitlines()
    assert predicted[0] == "label,prob_0,prob_1,prob_2"
    assert len(predicted) == 2  # the header and one row
    before = len(runs_of(team_server.url, "alice"))
    with pytest.raises(PipelineError) as raised:
        train_into(team_server.url, "epochs=5", "tracking.experiment=alice")
    line = str(raised.value)
    assert line.startswith(f"Tracking server {team_server.url} denied user 'bob' this (403")
    assert "Fix: ask the server's admin for EDIT" in line
    assert "\n" not in line
    assert "Epoch" not in capsys.readouterr().out
    assert len(runs_of(team_server.url, "alice")) == before  # no run of bob's

    experiment_id = parent.info.experiment_id
    as_user("admin", ADMIN_PASSWORD)
    admin = get_app_client("basic-auth", tracking_uri=team_server.url)
    admin.grant_user_permission("carol", "experiment", experiment_id, "DENY")
    as_user("carol", users["carol"])
    assert MlflowClient(team_server.url).search_runs([experiment_id]) == []
    with pytest.raises(PipelineError) as raised:
        compare.main([parent.info.run_id, *url])
    assert "denied user 'carol'" in str(raised.value)


@pytest.mark.slow
def test_a_users_password_stays_out_of_runs_files_and_output(team_server, users, sweep,
                                                              tmp_path):  # fmt: skip
    result, parent, runs = sweep
    secret = users["alice"]
    assert secret not in result.stdout + result.stderr
    assert secret not in team_server.log.read_text()
    client = MlflowClient(team_server.url)
    for run in [parent, *runs]:
        texts = [run.info.run_name, *run.data.params.values(), *run.data.tags.values()]
        assert not any(secret in text for text in texts)
        local = Path(
            client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id))
        )
        for path in local.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
