"""Which runs can be resumed: runs that ended before their training did, told from live ones.

A run is *interrupted* when it is KILLED (Ctrl-C, SIGTERM, a preemption), FAILED by an error
that need not happen again (not a diverged cost: that one would), or RUNNING while its process
is gone: on this host, no process with its id and start time exists; under Slurm, its job was
requeued; on another host, its heartbeat is older than ``STALE_AFTER_S``. Nothing here marks a
live run dead.
"""

from __future__ import annotations

import time
from enum import Enum

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipeline.runtime import process
from pipeline.tags import (
    CV_FOLD,
    FAILURE_REASON,
    FAILURE_RESUMABLE,
    PROCESS_HEARTBEAT,
    PROCESS_HOST,
    PROCESS_PID,
    RUN_KEY,
)

HEARTBEAT_S = 30.0  # how often a running run writes its PROCESS_HEARTBEAT
STALE_AFTER_S = 600.0  # a run on another host is taken as gone after this long without one


class State(Enum):
    finished = "finished"
    running = "running"  # its process is alive
    interrupted = "interrupted"  # resumable
    failed = "failed"  # FAILED for good (a diverged cost)


def state(run: Run) -> State:
    status, tags = run.info.status, run.data.tags
    if status == "FINISHED":
        return State.finished
    if status == "FAILED" and tags.get(FAILURE_RESUMABLE) == "false":
        return State.failed
    if status in ("RUNNING", "SCHEDULED") and not process_ended(run):
        return State.running
    return State.interrupted


def why_not(run: Run) -> str | None:
    """Why ``run`` cannot be resumed, as one line with a fix (None: it can be)."""
    found, name = state(run), f"Run {run.info.run_id} ({run.info.run_name})"
    if found == State.running:
        host, pid = run.data.tags.get(PROCESS_HOST), run.data.tags.get(PROCESS_PID)
        return (
            f"{name} is still running (process {pid} on {host}). Fix: let it finish, or stop "
            "it first (Ctrl-C, or kill that process) and resume it then"
        )
    if found == State.failed:
        return (
            f"{name} failed in a way that would repeat ({run.data.tags.get(FAILURE_REASON)}). "
            f"Fix: rerun it with other settings: python -m pipeline.rerun {run.info.run_id} ..."
        )
    return None


def process_ended(run: Run) -> bool:
    """Whether the process of a RUNNING run is gone (see the module's docstring)."""
    gone = process.is_gone(run.data.tags)
    if gone is not None:
        return gone
    beat_ms = int(run.data.tags.get(PROCESS_HEARTBEAT) or run.info.start_time or 0)
    return time.time() - beat_ms / 1000 > STALE_AFTER_S


def runs_with_key(client: MlflowClient, experiment_id: str, key: str) -> list[Run]:
    """Runs of the same experiment (config, code, data: ``run.key``), newest first."""
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_KEY}` = '{key}'",
        order_by=["attributes.start_time DESC"],
    )


def runs_by_key(client: MlflowClient, experiment_id: str) -> dict[str, list[Run]]:
    """Every run of the experiment that has a ``run.key``, by key, newest first: what
    ``runs_with_key`` finds for each, in one search (a batched group's jobs ask at once)."""
    found: dict[str, list[Run]] = {}
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_KEY}` LIKE '%'",
            order_by=["attributes.start_time DESC"], max_results=50000, page_token=token,
        )  # fmt: skip
        for run in page:
            found.setdefault(run.data.tags[RUN_KEY], []).append(run)
        token = page.token
        if not token:
            return found


def interrupted_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """The experiment's interrupted runs, newest first (a cross-validation fold's run resumes
    with its configuration's run: not listed apart)."""
    candidates = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status != 'FINISHED' AND tags.`{CV_FOLD}` IS NULL",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    return [run for run in candidates if state(run) == State.interrupted]
