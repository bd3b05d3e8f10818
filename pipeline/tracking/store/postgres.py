"""A PostgreSQL store, checked before MLflow opens it: the driver installed, the server
reachable, the login and the database accepted.

MLflow retries a database it cannot reach for minutes before it gives up with a traceback;
this check answers within seconds, in one line that names what to fix. The one place that
says what a PostgreSQL URI is (``is_postgres``), and the one SQLAlchemy engine a process uses
for its own checks and locks (``engine``; MLflow keeps its own): a command checks a database
once, however many runs it opens there.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError, first_line
from pipeline.tracking.store.redact import redact

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

CONNECT_TIMEOUT_S = 5
DRIVER_FIX = 'pip install -e ".[server]" (psycopg 3, for postgresql://), or the URI\'s driver'
DEFAULT_SETTING = "tracking.uri (or MLFLOW_TRACKING_URI)"
_accepted: set[tuple[str, str | None]] = set()  # (URI, PGPASSWORD) that let this process in


def is_postgres(uri: str) -> bool:
    """``postgresql://...`` or ``postgresql+<driver>://...``."""
    return uri.startswith(("postgresql://", "postgresql+"))


@functools.cache
def engine(uri: str) -> Engine:
    """This process's engine for the database ``uri``: no pool (a connection per use), each
    connection made within 5 s. Raises what ``create_engine`` raises for a bad URI or driver."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    return create_engine(
        make_url(uri), poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )


def check_database(uri: str, setting: str = DEFAULT_SETTING) -> None:
    """Connect once (within 5 s); a PipelineError that names the fix if that fails. A database
    that let this process in is not asked again.

    ``setting`` is where the user wrote the URI (``tracking.uri``, ``--backend-store-uri``).
    """
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    key = (uri, os.environ.get("PGPASSWORD"))
    if key in _accepted:
        return
    try:
        database = engine(uri)
    except ArgumentError as err:
        raise PipelineError(
            f"Not a database URI: {redact(uri)} ({first_line(err)}). "
            f"Fix: write {setting} as postgresql://USER@HOST:PORT/DATABASE"
        ) from None
    except ImportError as err:  # the dialect's driver, imported by create_engine
        raise PipelineError(
            f"No PostgreSQL driver for {redact(uri)} ({first_line(err)}). Fix: {DRIVER_FIX}"
        ) from None
    try:
        with database.connect():
            pass
    except SQLAlchemyError as err:
        raise connection_error(database.url, getattr(err, "orig", None) or err, setting) from None
    _accepted.add(key)


def connection_error(url: URL, err: BaseException, setting: str) -> PipelineError:
    """One line for a failed connection: unreachable, login refused, or no such database."""
    # libpq: 'connection to server at "h", port 5432 failed: FATAL:  database "x" does not exist'
    reason = str(err).rsplit("failed: ", 1)[-1].strip().splitlines()[0].removeprefix("FATAL:")
    reason = redact(reason.strip())
    where = f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}"
    if "password" in reason or "authentication" in reason or "role" in reason:
        return PipelineError(
            f"{where} refused user {url.username!r} ({reason}). Fix: correct the user and "
            f"password in {setting}, or set PGPASSWORD (or ~/.pgpass)"
        )
    if "database" in reason and "does not exist" in reason:
        return PipelineError(
            f"{where} has no database {url.database!r}. Fix: create it (createdb -h {url.host} "
            f"-p {url.port or 5432} -U {url.username} {url.database}), or correct {setting}"
        )
    return PipelineError(
        f"{where} is unreachable ({reason}). Fix: start it, or correct the host and port "
        f"in {setting}"
    )
