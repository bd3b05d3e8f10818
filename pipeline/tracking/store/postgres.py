"""A PostgreSQL store, checked before MLflow opens it: the driver installed, the server
reachable, the login and the database accepted.

MLflow retries a database it cannot reach for minutes before it gives up with a traceback;
this check answers within seconds, in one line that names what to fix.
"""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from pipeline.errors import PipelineError, first_line
from pipeline.tracking.store.redact import redact

CONNECT_TIMEOUT_S = 5
DRIVER_FIX = 'pip install -e ".[server]" (psycopg 3, for postgresql://), or the URI\'s driver'
DEFAULT_SETTING = "tracking.uri (or MLFLOW_TRACKING_URI)"


def is_postgres(uri: str) -> bool:
    """``postgresql://...`` or ``postgresql+<driver>://...``."""
    return uri.startswith(("postgresql://", "postgresql+"))


def check_database(uri: str, setting: str = DEFAULT_SETTING) -> None:
    """Connect once (within 5 s); a PipelineError that names the fix if that fails.

    ``setting`` is where the user wrote the URI (``tracking.uri``, ``--backend-store-uri``).
    """
    try:
        url = make_url(uri)
        engine = create_engine(
            url, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
        )
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
        with engine.connect():
            pass
    except SQLAlchemyError as err:
        raise connection_error(url, getattr(err, "orig", None) or err, setting) from None
    finally:
        engine.dispose()


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
