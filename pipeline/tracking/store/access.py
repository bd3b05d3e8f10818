"""Where runs are stored: the tracking URI, opening or creating the store, finding a run.

One line for every store problem (unreachable server, unopenable or read-only database, an
unknown or deleted run), said before any run is created.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock
from mlflow.entities import Experiment, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import PipelineError, first_line
from pipeline.tracking.store.postgres import check_database, engine, is_postgres
from pipeline.tracking.store.reads import deleted_run, unknown_run
from pipeline.tracking.store.redact import redact
from pipeline.tracking.store.template import build_empty_store
from pipeline.tracking.store.uri import STORE_DIR as STORE_DIR
from pipeline.tracking.store.uri import default_tracking_uri as default_tracking_uri
from pipeline.tracking.store.uri import is_server, sqlite_path
from pipeline.tracking.store.uri import resolve_tracking_uri as resolve_tracking_uri

ADVISORY_LOCK = 0x6D6C666C  # "mlfl": the PostgreSQL advisory lock key of first use
STORE_ERRORS = (MlflowException, SQLAlchemyError, sqlite3.Error, OSError, ValueError)
ANSWER_TIMEOUT_S = 5  # for a tracking server's first answer
LOGIN_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
_answered: set[tuple[str | None, ...]] = set()  # (URI, login) a server accepted in this process


def store_error(uri: str, err: BaseException) -> PipelineError:
    """One line for a store that cannot be opened or written."""
    refused = refusal(uri, err)
    if refused is not None:
        return refused
    while getattr(err, "orig", None) or err.__cause__ or err.__context__:  # the database's words
        err = getattr(err, "orig", None) or err.__cause__ or err.__context__
    return PipelineError(
        f"Tracking store error at {redact(uri)}: {redact(first_line(err))}. "
        "Fix: check tracking.uri or MLFLOW_TRACKING_URI (and that the store is writable)"
    )


def refusal(uri: str, err: BaseException) -> PipelineError | None:
    """One line for a tracking server that refused us: no login (401), or no permission (403);
    None for any other error."""
    status = err.get_http_status_code() if isinstance(err, MlflowException) else None
    if status == 401:
        return no_login(uri)
    if status != 403:
        return None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    return PipelineError(
        f"Tracking server {redact(uri)} denied user {user!r} this (403: no permission). "
        "Fix: ask the server's admin for EDIT on the experiment to train in it (READ to read it),"
        " or pick another tracking.experiment"
    )


def no_login(uri: str) -> PipelineError:
    """The server wants a login we did not give, or not the one we gave (401)."""
    return PipelineError(
        f"Tracking server {redact(uri)} refused the credentials (401). "
        "Fix: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    )


def prepare_store(uri: str, experiment: str) -> str:
    """Create the store and the experiment if needed (once, before any job); return its id."""
    check_reachable(uri)
    try:
        found = _get_or_create_experiment(uri, experiment)
    except STORE_ERRORS as err:
        raise store_error(uri, err) from None
    if found.lifecycle_stage != "active":
        raise PipelineError(
            f"Experiment {experiment!r} is deleted. Fix: restore it with "
            f"`mlflow experiments restore --experiment-id {found.experiment_id}` "
            "or pick another tracking.experiment"
        )
    return found.experiment_id


def _get_or_create_experiment(uri: str, name: str) -> Experiment:
    client = open_for_writing(uri)
    found = client.get_experiment_by_name(name)
    if found is None:
        with first_use_lock(uri):  # two processes creating it at once would make two
            found = client.get_experiment_by_name(name)
            if found is None:
                client.create_experiment(name, artifact_location=artifact_location(uri, name))
                found = client.get_experiment_by_name(name)
    return found


def artifact_location(uri: str, experiment: str) -> str | None:
    """Beside a sqlite store: ``<store dir>/artifacts/<experiment>``; else the store's default."""
    db_path = sqlite_path(uri)
    if db_path is None:
        return None
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment)
    return (db_path.parent / "artifacts" / slug).as_uri()


def open_for_writing(uri: str) -> MlflowClient:
    """A client for the store ``uri``, which is created first if it does not exist.

    Creating a store (its tables and schema migrations) is done by one process at a time, under
    ``first_use_lock``: parallel first runs on a fresh directory or database do not collide. A
    new sqlite store is built in a temporary file and renamed into place when complete, so a
    crash while creating it leaves no half-made store behind.
    """
    db_path = sqlite_path(uri)
    if db_path is not None:
        if not db_path.exists():
            db_path.parent.mkdir(parents=True, exist_ok=True)
            with first_use_lock(uri):
                if not db_path.exists():
                    _create_sqlite_store(db_path)
        return MlflowClient(tracking_uri=uri)
    if is_server(uri):
        return MlflowClient(tracking_uri=uri)
    with first_use_lock(uri):  # another database: opening it the first time creates its tables
        return MlflowClient(tracking_uri=uri)


def _create_sqlite_store(db_path: Path) -> None:
    building = db_path.with_name(f".{db_path.name}.{os.getpid()}.new")
    # Fail now, not after MLflow's connection retries (a minute and more).
    sqlite3.connect(f"{building.resolve().as_uri()}?mode=rwc", uri=True).close()
    building.unlink()
    build_empty_store(building)
    MlflowClient(tracking_uri=f"sqlite:///{building}").get_experiment("0")  # MLflow's Default
    os.replace(building, db_path)


@contextmanager
def first_use_lock(uri: str) -> Iterator[None]:
    """Held by one process at a time, per store: a lock file beside a sqlite store
    (``filelock``), a session advisory lock in PostgreSQL; nothing for other stores."""
    db_path = sqlite_path(uri)
    if db_path is not None:
        lock = db_path.parent / f".{db_path.name}.lock"
        try:  # FileLock would wait forever for a lock file it cannot create
            lock.touch(exist_ok=True)
        except OSError as err:
            raise store_error(uri, err) from None
        with FileLock(lock):
            yield
    elif is_postgres(uri):
        from sqlalchemy import text

        with engine(uri).connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK})
    else:
        yield


def check_reachable(uri: str) -> None:
    """PostgreSQL must let us in; a tracking server must answer within 5 s and accept our login.
    Asked once per process: a command that opens many runs there asks once."""
    if is_postgres(uri):
        check_database(uri)
    if is_server(uri):
        check_server(uri)


def check_server(uri: str) -> None:
    """One request (``search_experiments``, one result, no retries) to the tracking server:
    unreachable, or refusing our login (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``), is one
    line before anything is created. MLflow's own client would retry for minutes."""
    key = (uri, *(os.environ.get(name) for name in LOGIN_VARIABLES))
    if key in _answered:
        return
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/search",
            "GET",
            max_retries=0,
            timeout=ANSWER_TIMEOUT_S,
            params={"max_results": 1},
        )
    except MlflowException as err:
        raise PipelineError(
            f"Tracking server {redact(uri)} is unreachable ({redact(root_cause(err))}). "
            "Fix: start it, or point tracking.uri elsewhere"
        ) from None
    if response.status_code == 401:
        raise no_login(uri)
    _answered.add(key)  # any other answer: the server is there, and took our login


def root_cause(err: BaseException) -> str:
    """The innermost cause of ``err`` (``[Errno 111] Connection refused``)."""
    while err.__cause__ or err.__context__:
        err = err.__cause__ or err.__context__
    return first_line(err)


def open_store(uri: str) -> MlflowClient:
    """A client for an existing store (to read runs); never creates one."""
    check_reachable(uri)
    db_path = sqlite_path(uri)
    if db_path is not None and not db_path.is_file():
        raise PipelineError(
            f"No tracking store at {redact(uri)}. Fix: run from the directory you trained in, "
            "or pass --tracking-uri (or set MLFLOW_TRACKING_URI)"
        )
    try:
        return MlflowClient(tracking_uri=uri)
    except STORE_ERRORS as err:
        raise store_error(uri, err) from None


def fetch_run(client: MlflowClient, run_id: str) -> Run:
    """The run ``run_id``; one line if it is unknown or deleted."""
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        refused = refusal(client.tracking_uri, err)
        if refused is not None:
            raise refused from None
        raise unknown_run(client.tracking_uri, run_id) from None
    if run.info.lifecycle_stage == "deleted":
        raise deleted_run(run_id)
    return run


def find_experiment(client: MlflowClient, name: str) -> Experiment | None:
    """The active experiment ``name``, if the store has it."""
    try:
        found = client.get_experiment_by_name(name)
    except STORE_ERRORS as err:
        raise store_error(client.tracking_uri, err) from None
    return found if found is not None and found.lifecycle_stage == "active" else None
