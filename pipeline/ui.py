"""Open the MLflow UI on the pipeline's store: ``python -m pipeline.ui [--port 5000]``.

The store is the one ``python -m pipeline.train`` writes by default ($MLFLOW_TRACKING_URI if
set, else ``sqlite:///<cwd>/mlruns/mlflow.db``) unless ``--tracking-uri`` names another. A
missing sqlite store is an error (exit status 2), never created. Otherwise this process becomes
``mlflow ui`` (one worker), after printing the URL of the experiment's runs table. MLflow's
GenAI job runner stays off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true`` turns it on).
"""

from __future__ import annotations

import os
import sys

from pipeline import cli

EXAMPLE = "python -m pipeline.ui --port 5000"


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("ui", __doc__, EXAMPLE)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: local)")
    parser.add_argument("--backend-store-uri", dest="tracking_uri", help="same as --tracking-uri")
    parser.add_argument("--experiment", default=None, help="whose runs table to link")
    args = parser.parse_args(argv)

    from pipeline.config import compose_config
    from pipeline.errors import PipelineError
    from pipeline.tracking.store.access import (
        find_experiment,
        is_server,
        open_store,
        resolve_tracking_uri,
        sqlite_path,
    )
    from pipeline.tracking.store.redact import redact
    from pipeline.tracking.store.serving import JOBS_VARIABLE, experiment_page, ui_root

    uri = resolve_tracking_uri(args.tracking_uri)
    if is_server(uri):
        print(f"Runs are tracked by the server at {redact(uri)}: open it there.")
        return 0
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise PipelineError(
            f"No tracking store at {db}. Fix: run `python -m pipeline.train` first "
            "(from this directory), or pass --tracking-uri"
        )
    experiment = args.experiment or compose_config().tracking.experiment
    found = find_experiment(open_store(uri), experiment)
    root = ui_root(args.host, args.port)
    page = experiment_page(root, found.experiment_id) if found else f"{root}/"
    print(f"MLflow UI for {redact(uri)}: open {page}", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--host", args.host, "--port", str(args.port), "--workers", "1"]
    sys.stderr.flush()
    os.environ.setdefault(JOBS_VARIABLE, "false")  # MLflow's GenAI job runner: off
    os.execv(sys.executable, command)
    return 1  # not reached: execv replaces this process


if __name__ == "__main__":
    cli.run(main)
