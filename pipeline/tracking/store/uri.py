"""Which store a command reads or writes: the tracking URI and what kind of store it names.

Without MLflow: a command that reads a sqlite or PostgreSQL store directly
(``pipeline.tracking.store.reads``) never imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

STORE_DIR = "mlruns"


def default_tracking_uri() -> str:
    """The sqlite store under ./mlruns of the directory the user runs from."""
    return f"sqlite:///{Path.cwd().resolve() / STORE_DIR / 'mlflow.db'}"


def resolve_tracking_uri(configured: str | None) -> str:
    """``tracking.uri`` if set, else $MLFLOW_TRACKING_URI, else the default sqlite store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``?mode=ro`` and ``file:`` forms too)."""
    if not uri.startswith("sqlite:///"):
        return None
    database = uri.removeprefix("sqlite:///").split("?", 1)[0].removeprefix("file:")
    return Path(database)
