"""Open the MLflow UI on the pipeline's store: ``python -m pipeline.ui [--port 5000]``.

The store is the one ``python -m pipeline.train`` writes by default ($MLFLOW_TRACKING_URI if
set, else ``sqlite:///<cwd>/mlruns/mlflow.db``) unless ``--backend-store-uri`` names another.
A missing sqlite store is an error (exit status 2), never created. Otherwise this process
becomes ``mlflow ui`` (one worker), after printing the URL of the experiment's runs table.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from pipeline.redact import redact
from pipeline.tracking import resolve_tracking_uri, sqlite_path

EXPERIMENT = "softmax-regression"  # tracking.experiment's default


def experiment_id(db: Path, name: str) -> str | None:
    """The id of the active experiment ``name``, read without writing to the store."""
    query = "SELECT experiment_id FROM experiments WHERE name = ? AND lifecycle_stage = 'active'"
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as db_conn:
            row = db_conn.execute(query, (name,)).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def ui_url(host: str, port: int, exp_id: str | None) -> str:
    """Where to point the browser: the experiment's runs table, or the UI's home page."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    root = f"http://{shown}:{port}/"
    if exp_id is None:
        return root
    return f"{root}#/experiments/{exp_id}/runs?workflowType=machine_learning"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.ui", description=__doc__)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: local)")
    parser.add_argument("--backend-store-uri", default=None, help="default: the pipeline's store")
    parser.add_argument("--experiment", default=EXPERIMENT, help="whose runs table to link")
    args = parser.parse_args(argv)

    uri = args.backend_store_uri or resolve_tracking_uri(None)
    if uri.startswith(("http://", "https://")):
        print(f"Runs are tracked by the server at {redact(uri)}: open it there.")
        return 0
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        print(
            f"No tracking store at {db}. Fix: run `python -m pipeline.train` first "
            "(from this directory), or pass --backend-store-uri",
            file=sys.stderr,
        )
        return 2

    exp_id = experiment_id(db, args.experiment) if db is not None else None
    print(f"MLflow UI for {redact(uri)}: open {ui_url(args.host, args.port, exp_id)}", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--host", args.host, "--port", str(args.port), "--workers", "1"]
    sys.stderr.flush()
    os.execv(sys.executable, command)
    return 1  # not reached: execv replaces this process


if __name__ == "__main__":
    sys.exit(main())
