"""The store served over HTTP: where to look at runs in the MLflow UI (the one place that
builds its addresses), and what the MLflow servers that ``python -m pipeline.ui`` and
``python -m pipeline.server`` start are told.

It loads no MLflow, so the commands import it before they check their input.
"""

from __future__ import annotations

from pipeline.tracking.store.redact import redact

LOCAL_UI = "http://127.0.0.1:5000"  # where `python -m pipeline.ui` serves by default
# MLflow's job runner (GenAI evaluation jobs, trace rollups) starts 8 more processes that
# training runs never use; set MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to have them anyway.
JOBS_VARIABLE = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def ui_root(host: str = "127.0.0.1", port: int = 5000) -> str:
    """The UI's base URL for a server bound to ``host`` (a wildcard bind is reached locally)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}"


def experiment_page(root: str, experiment_id: str) -> str:
    """The experiment's runs table, in the UI's "Machine learning" view."""
    return f"{root.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def run_page(root: str, experiment_id: str, run_id: str) -> str:
    return f"{root.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def run_address(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where to see the run: the server's page for it, or the local UI's after starting it."""
    from pipeline.tracking.store.access import is_server, resolve_tracking_uri  # loads MLflow

    if is_server(tracking_uri):
        return run_page(tracking_uri, experiment_id, run_id)
    page = run_page(LOCAL_UI, experiment_id, run_id)
    ui = "python -m pipeline.ui"
    if tracking_uri != resolve_tracking_uri(None):  # not the store the UI opens by default
        ui += f" --tracking-uri {redact(tracking_uri)}"
    return f"{page} (start the UI with `{ui}`)"
