"""Runs read straight from MLflow's tables, without MLflow: what ``search_runs``, ``get_run`` and
``get_experiment_by_name`` give, in a few SQL queries and without importing MLflow (1.5-2 s of
CPU in a command that only reads).

``compare`` on a sweep of 1000 runs: through ``MlflowClient.search_runs`` the ORM builds 65,000
objects (1.5 s), and importing MLflow and opening its store costs more than that again; here
it is a query for the runs and, per 500 runs, one each for params, latest metrics and tags.
Only where the schema is known (``schema.VERIFIED_REVISIONS`` on sqlite or PostgreSQL, as for
``bulk``'s writes); elsewhere (a tracking server, another revision) the commands read through
MLflow's client (``pipeline.tracking.query.runs``). A reader never writes, never creates a
store, and takes no write lock.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from pipeline.errors import PipelineError
from pipeline.tracking.store.redact import redact
from pipeline.tracking.store.schema import VERIFIED_REVISIONS, dialect
from pipeline.tracking.store.uri import sqlite_path

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

RUN_IDS_PER_QUERY = 500  # bound parameters of one IN (...)
RUN_NAME_TAG = "mlflow.runName"  # a run's name where its ``name`` column is empty (MLflow 1.x)
# The filters the commands search with (``lookup``): tags that equal a value, or are (not) set.
CLAUSE = re.compile(r"tags\.`([^`]+)` (?:(IS NULL|IS NOT NULL)|(=) '([^'\\]*)')")


@dataclass(frozen=True)
class RunRecord:
    """What the commands that rank runs read of one: ``Run.info``'s fields and ``Run.data``'s
    dicts as MLflow gives them (a metric's latest value; NaN where MLflow stored a NaN)."""

    run_id: str
    run_name: str
    status: str
    experiment_id: str
    start_time: int | None
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def unknown_run(uri: str, run_id: str) -> PipelineError:
    return PipelineError(
        f"No run {run_id!r} in {redact(uri)}. "
        "Fix: copy the run id from the MLflow UI, or point --tracking-uri at its store"
    )


def deleted_run(run_id: str) -> PipelineError:
    return PipelineError(
        f"Run {run_id} is deleted. Fix: restore it with `mlflow runs restore --run-id {run_id}`"
    )


@functools.cache
def engine(uri: str) -> Engine:
    """This process's reading engine for ``uri``: plain transactions (no write lock)."""
    from sqlalchemy import create_engine

    return create_engine(uri)


def reads_directly(uri: str) -> bool:
    """Whether ``uri`` is an existing sqlite or PostgreSQL store at a verified revision."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    if dialect(uri) is None:
        return False
    database = sqlite_path(uri)
    if database is not None and not database.is_file():
        return False  # MLflow's client says what is wrong (never create a store here)
    try:
        with engine(uri).connect() as connection:
            found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return False
    return found in VERIFIED_REVISIONS


def tag_clauses(filter_string: str) -> list[tuple[str, str, str | None]] | None:
    """``search_runs``' filter as (tag, comparator, value) clauses joined by AND: the filters
    the commands use (``tags.`k` = 'v'``, ``tags.`k` IS NULL``, ``IS NOT NULL``); None for any
    other filter (read through MLflow's client then)."""
    clauses = []
    for part in filter_string.split(" AND "):
        matched = CLAUSE.fullmatch(part.strip())
        if matched is None:
            return None
        key, null_test, equals, value = matched.groups()
        clauses.append((key, null_test or equals, value))
    return clauses


class Tables:
    """MLflow's tables, as SQLAlchemy Core sees the columns read here (no ORM)."""

    def __init__(self) -> None:
        from sqlalchemy import Boolean, column, table

        self.experiments = table(
            "experiments", column("experiment_id"), column("name"), column("lifecycle_stage")
        )
        self.runs = table(
            "runs", column("run_uuid"), column("name"), column("status"),
            column("experiment_id"), column("start_time"), column("lifecycle_stage"),
            column("artifact_uri"),
        )  # fmt: skip
        self.tags = table("tags", column("run_uuid"), column("key"), column("value"))
        self.params = table("params", column("run_uuid"), column("key"), column("value"))
        self.latest = table(
            "latest_metrics", column("run_uuid"), column("key"), column("value"),
            column("is_nan", Boolean),
        )  # fmt: skip


@functools.cache
def tables() -> Tables:
    return Tables()


def experiment_id(uri: str, name: str) -> str | None:
    """The id of the active experiment ``name``; None if there is none."""
    from sqlalchemy import select

    t = tables().experiments
    query = select(t.c.experiment_id, t.c.lifecycle_stage).where(t.c.name == name)
    with engine(uri).connect() as connection:
        found = connection.execute(query).first()
    return str(found[0]) if found is not None and found[1] == "active" else None


def get_run(uri: str, run_id: str) -> RunRecord:
    """The run ``run_id``, with its params, latest metrics and tags; one line if it is unknown
    or deleted (as ``access.fetch_run`` says it)."""
    from sqlalchemy import select

    t = tables().runs
    with engine(uri).connect() as connection:
        found = connection.execute(_run_columns(select).where(t.c.run_uuid == run_id)).first()
        if found is None:
            raise unknown_run(uri, run_id)
        if found.lifecycle_stage == "deleted":
            raise deleted_run(run_id)
        return _records(connection, [found])[0]


def search(
    uri: str,
    experiment: str,
    clauses: list[tuple[str, str, str | None]],
    metric: str | None = None,
    descending: bool = False,
    limit: int | None = None,
) -> list[RunRecord]:
    """The active runs of ``experiment`` that ``clauses`` (``tag_clauses``) select, in
    ``search_runs``' order: by ``metric`` (NaN after the numbers, runs without it last; ties
    oldest first) if given, else newest first; then by run id. At most ``limit``."""
    from sqlalchemy import case, select, true

    t = tables()
    query = _run_columns(select).where(
        t.runs.c.experiment_id == int(experiment), t.runs.c.lifecycle_stage == "active"
    )
    for key, comparator, value in clauses:
        tag = select(t.tags.c.run_uuid).where(
            t.tags.c.run_uuid == t.runs.c.run_uuid, t.tags.c.key == key
        )
        if comparator == "=":
            query = query.where(tag.where(t.tags.c.value == value).exists())
        else:
            query = query.where(tag.exists() if comparator == "IS NOT NULL" else ~tag.exists())
    if metric is None:
        order = [t.runs.c.start_time.desc()]
    else:  # as SqlAlchemyStore's _get_orderby_clauses sorts by a metric
        latest = select(t.latest).where(t.latest.c.key == metric).subquery()
        query = query.outerjoin(latest, latest.c.run_uuid == t.runs.c.run_uuid)
        missing = case((latest.c.is_nan == true(), 1), (latest.c.value.is_(None), 2), else_=0)
        value = latest.c.value.desc() if descending else latest.c.value
        order = [missing, value, t.runs.c.start_time]
    query = query.order_by(*order, t.runs.c.run_uuid).limit(limit)
    with engine(uri).connect() as connection:
        return _records(connection, connection.execute(query).all())


def runs_by_id(uri: str, experiment: str, run_ids: list[str]) -> list[RunRecord]:
    """The active runs of ``experiment`` among ``run_ids`` (what ``search_runs`` finds with
    ``attributes.run_id IN (...)``), in no particular order."""
    from sqlalchemy import bindparam, select

    c = tables().runs.c
    query = _run_columns(select).where(
        c.experiment_id == int(experiment), c.lifecycle_stage == "active",
        c.run_uuid.in_(bindparam("ids", expanding=True)),
    )  # fmt: skip
    found = []
    with engine(uri).connect() as connection:
        for start in range(0, len(run_ids), RUN_IDS_PER_QUERY):
            chunk = {"ids": run_ids[start : start + RUN_IDS_PER_QUERY]}
            found += connection.execute(query, chunk).all()
        return _records(connection, found)


def _run_columns(select: Any) -> Any:
    c = tables().runs.c
    return select(
        c.run_uuid, c.name, c.status, c.experiment_id, c.start_time, c.artifact_uri,
        c.lifecycle_stage,
    )  # fmt: skip


def _records(connection: Connection, rows: list[Any]) -> list[RunRecord]:
    """RunRecords of ``runs`` rows, their params, latest metrics and tags read per 500 runs."""
    from sqlalchemy import bindparam, select

    t = tables()
    run_ids = [row.run_uuid for row in rows]
    found: dict[str, dict[str, dict[str, Any]]] = {
        run_id: {"params": {}, "metrics": {}, "tags": {}} for run_id in run_ids
    }
    ids = bindparam("ids", expanding=True)
    queries = {
        kind: select(*columns).where(columns[0].in_(ids))
        for kind, columns in (
            ("params", list(t.params.c)),
            ("tags", list(t.tags.c)),
            ("metrics", list(t.latest.c)),
        )
    }
    for start in range(0, len(run_ids), RUN_IDS_PER_QUERY):
        chunk = {"ids": run_ids[start : start + RUN_IDS_PER_QUERY]}
        for kind, query in queries.items():
            for row in connection.execute(query, chunk):
                value = math.nan if kind == "metrics" and row[3] else row[2]
                found[row[0]][kind][row[1]] = value
    return [
        RunRecord(
            run_id=row.run_uuid,
            run_name=row.name or found[row.run_uuid]["tags"].get(RUN_NAME_TAG, row.name),
            status=row.status,
            experiment_id=str(row.experiment_id),
            start_time=row.start_time,
            artifact_uri=row.artifact_uri,
            **found[row.run_uuid],
        )
        for row in rows
    ]


def local_artifact(artifact_uri: str, name: str) -> Path | None:
    """Where a run's artifact ``name`` is on this machine's disk (a ``file:`` or plain path
    artifact location); None for any other location (read it through MLflow then)."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(url2pathname(parsed.path)) / name
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (a Windows drive letter)
        return Path(artifact_uri) / name
    return None
