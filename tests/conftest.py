"""Shared fixtures: a real sqlite MLflow store in a temp dir and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
# What ../shared/reference/seed_softmax.py prints (torch 2.13.0, CPU); bench/ has the script.
REFERENCE_OUTPUT = ROOT / "tests" / "reference_output.txt"
EXPERIMENT = "softmax-regression"


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    module: str = "pipeline.train",
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` the way a user does; capture its output."""
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    """Start ``python -m pipeline.train args`` in the background, its output unbuffered."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sqlite_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlflow.db'}"


def runs_of(uri: str, experiment: str = EXPERIMENT) -> list:
    """All runs of the experiment, oldest first ([] when the store or experiment is absent)."""
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


def sweep_runs(uri: str, experiment: str = EXPERIMENT) -> tuple[Any, list]:
    """The (single) sweep parent run and its nested job runs."""
    runs = runs_of(uri, experiment)
    (parent,) = [r for r in runs if "sweep.dir" in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


def cost_history(uri: str, run_id: str, key: str = "cost") -> list[float]:
    history = MlflowClient(tracking_uri=uri).get_metric_history(run_id, key)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A tracking URI for a fresh sqlite store in a temp dir."""
    return sqlite_uri(tmp_path / "store")
