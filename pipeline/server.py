"""Start the team's MLflow tracking server on PostgreSQL: ``python -m pipeline.server``.

Runs, params and metrics go to the PostgreSQL database of ``--backend-store-uri``; artifacts
and models go through the server (MLflow's artifact proxy) to ``--artifacts-destination``, so
clients need only the server's address: ``tracking.uri=http://HOST:PORT``. Before starting,
the database is checked (driver installed, server reachable, login and database accepted)
and the port must be free: a problem is one line and exit status 2. Then this process becomes
``mlflow server``, which gets the backend URI through its environment
(``MLFLOW_BACKEND_STORE_URI``), never its command line: a password in it stays out of ``ps``.
Bound to 127.0.0.1 unless ``--host`` says otherwise.

Authentication is on unless ``--no-auth``: MLflow's basic-auth app, its users and permissions
in the same PostgreSQL database (``--auth-database-uri`` for another), the admin's password
from ``MLFLOW_AUTH_ADMIN_PASSWORD`` (needed until the admin exists) and the session secret from
``MLFLOW_FLASK_SERVER_SECRET_KEY``. Clients log in with ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD``.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import cli
from pipeline.errors import PipelineError
from pipeline.tracking.store.password import PASSWORD_VARIABLE, url_password, without_password
from pipeline.tracking.store.serving import JOBS_VARIABLE, ui_root

EXAMPLE = (
    "python -m pipeline.server --backend-store-uri postgresql://mlflow@127.0.0.1:5432/mlflow "
    "--artifacts-destination /srv/mlflow/artifacts"
)
BACKEND_VARIABLE = "MLFLOW_BACKEND_STORE_URI"  # mlflow server reads --backend-store-uri from it
SETTING = "--backend-store-uri"
ADMIN_PASSWORD = "MLFLOW_AUTH_ADMIN_PASSWORD"
ADMIN_USERNAME = "MLFLOW_AUTH_ADMIN_USERNAME"
SECRET_KEY = "MLFLOW_FLASK_SERVER_SECRET_KEY"
MIN_PASSWORD_LENGTH = 12  # MLflow's rule for its users' passwords
PERMISSIONS = ("READ", "NO_PERMISSIONS")  # what a user may do in others' experiments


@dataclass
class ServerCommand:
    """What to run: ``mlflow server``'s arguments and the environment it gets on top of ours."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def exec(self) -> None:
        """Become the server (this process is replaced)."""
        sys.stdout.flush()
        sys.stderr.flush()
        argv = [sys.executable, "-m", "mlflow", "server", *self.args]
        os.execve(sys.executable, argv, {**os.environ, **self.env})


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("server", __doc__, EXAMPLE, tracking_uri=False)
    parser.add_argument(
        SETTING,
        dest="backend_store_uri",
        default=os.environ.get(BACKEND_VARIABLE),
        help=f"postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE (default: ${BACKEND_VARIABLE}; "
        "the password may also come from PGPASSWORD or ~/.pgpass)",
    )
    parser.add_argument(
        "--artifacts-destination",
        required=True,
        help="where the server stores artifacts: a directory, or an object store URI (s3://...)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: local)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4, help="server processes (default: 4)")
    parser.add_argument(
        "--no-auth",
        dest="auth",
        action="store_false",
        help="no logins: anyone who reaches the port reads and writes everything",
    )
    parser.add_argument(
        "--auth-database-uri",
        help=f"where users and permissions live (default: the {SETTING} database)",
    )
    parser.add_argument(
        "--default-permission",
        choices=PERMISSIONS,
        default="READ",
        help="what users may do in experiments they were not granted (default: READ)",
    )
    parser.add_argument(
        "--auth-cache-s",
        type=int,
        default=60,
        help="how long a server process trusts a checked password (default: 60; 0: never)",
    )
    args = parser.parse_args(argv)

    from pipeline.tracking.store.redact import redact

    uri = backend_store(args.backend_store_uri)
    destination = artifacts_destination(args.artifacts_destination)
    check_port_free(args.host, args.port)
    command = server_command(uri, destination, args.host, args.port, args.workers)
    if args.auth:
        auth_uri = backend_store(args.auth_database_uri) if args.auth_database_uri else uri
        command = with_auth(command, auth_uri, args.default_permission, args.auth_cache_s)
    root = ui_root(args.host, args.port)
    print(f"MLflow tracking server on {redact(uri)}, artifacts in {destination}: open {root}")
    if args.auth:
        print(f"Logins on: users sign in as themselves (admin: {admin_username()})")
    print(f"Track runs there with tracking.uri={root} (or MLFLOW_TRACKING_URI={root})", flush=True)
    command.exec()
    return 1  # not reached


def backend_store(uri: str | None) -> str:
    """The PostgreSQL URI, checked: driver, server, login and database."""
    from pipeline.tracking.store.postgres import check_database, is_postgres
    from pipeline.tracking.store.redact import redact

    if not uri:
        raise PipelineError(
            f"No backend store. Fix: pass {SETTING} postgresql://USER@HOST:PORT/DATABASE "
            f"(or set {BACKEND_VARIABLE})"
        )
    if not is_postgres(uri):
        raise PipelineError(
            f"{SETTING} must name a PostgreSQL database, got {redact(uri)}. Fix: pass "
            "postgresql://USER@HOST:PORT/DATABASE (for your own runs on this machine, "
            "`python -m pipeline.ui` serves the local store)"
        )
    check_database(uri, SETTING)
    return uri


def artifacts_destination(destination: str) -> str:
    """An object store URI as it is; a local directory made absolute (and created)."""
    if "://" in destination:
        return destination
    path = Path(destination).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PipelineError(
            f"Cannot create the artifacts destination {path} ({err.strerror}). "
            "Fix: pass a directory you can write to --artifacts-destination"
        ) from None
    return str(path)


def check_port_free(host: str, port: int) -> None:
    """The server must be able to bind ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise PipelineError(
                f"Cannot listen on {host}:{port} ({err.strerror}). Fix: pass another --port, "
                "or stop what uses it"
            ) from None


def server_command(uri: str, destination: str, host: str, port: int, workers: int) -> ServerCommand:
    """``mlflow server`` with the artifact proxy; the backend URI in its environment."""
    args = ["--host", host, "--port", str(port), "--workers", str(workers)]
    args += ["--artifacts-destination", destination]
    env = {BACKEND_VARIABLE: uri, JOBS_VARIABLE: os.environ.get(JOBS_VARIABLE, "false")}
    return ServerCommand(args, env)


def admin_username() -> str:
    return os.environ.get(ADMIN_USERNAME) or "admin"


def with_auth(
    command: ServerCommand, auth_uri: str, default_permission: str, cache_s: int
) -> ServerCommand:
    """``command`` as MLflow's basic-auth app: its settings in a private file, the database's
    password (if the URI has one) in PGPASSWORD, the secrets checked first.

    Checking a password costs about 0.1 s of CPU (scrypt), and a run makes hundreds of
    requests: each server process trusts a password it checked for ``cache_s`` seconds."""
    check_secrets(auth_uri)
    password = url_password(auth_uri)
    env = dict(command.env)
    if password is not None:
        env[PASSWORD_VARIABLE] = urllib.parse.unquote(password)
        auth_uri = without_password(auth_uri, password)
    settings = Path(tempfile.mkdtemp(prefix="pipeline-auth-")) / "basic_auth.ini"  # mode 0700
    settings.write_text(
        "[mlflow]\n"
        f"default_permission = {default_permission}\n"
        f"database_uri = {auth_uri.replace('%', '%%')}\n"
        f"admin_username = {admin_username()}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {cache_s}\n"
    )
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(settings)
    return ServerCommand([*command.args, "--app-name", "basic-auth"], env)


def check_secrets(auth_uri: str) -> None:
    """The session secret must be set; the admin's password too, until the admin exists."""
    if not os.environ.get(SECRET_KEY):
        raise PipelineError(
            f"{SECRET_KEY} is not set (the server signs its login sessions with it). Fix: "
            f"export {SECRET_KEY}=$(python -c 'import secrets; print(secrets.token_hex(32))'), "
            "the same for every start, or pass --no-auth"
        )
    password = os.environ.get(ADMIN_PASSWORD)
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise PipelineError(
            f"{ADMIN_PASSWORD} is {len(password)} characters long. "
            f"Fix: set it to a password of at least {MIN_PASSWORD_LENGTH} characters"
        )
    if password is None and not has_user(auth_uri, admin_username()):
        raise PipelineError(
            f"{ADMIN_PASSWORD} is not set, and the server has no admin {admin_username()!r} "
            f"yet. Fix: export {ADMIN_PASSWORD}=<a password of {MIN_PASSWORD_LENGTH}+ "
            "characters> for the first start (the admin is created with it)"
        )


def has_user(database_uri: str, username: str) -> bool:
    """Whether MLflow's auth tables in ``database_uri`` hold ``username`` (through the engine
    that checked the database: one per command)."""
    from sqlalchemy import inspect, text

    from pipeline.tracking.store.postgres import engine

    with engine(database_uri).connect() as connection:
        if not inspect(connection).has_table("users"):
            return False
        found = connection.execute(
            text("SELECT 1 FROM users WHERE username = :name"), {"name": username}
        )
        return found.first() is not None


if __name__ == "__main__":
    cli.run(main)
