"""Shared fixtures: real sqlite MLflow stores in temp dirs, Hydra composition, a CLI runner.

Tests train in this process (compose the config, call the stage) wherever a subprocess adds
nothing; they run ``python -m pipeline.<command>`` where the process is the point: its exit
status, output, signals.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, open_dict

from pipeline.config import CONF_DIR, register_configs, validate
from pipeline.runtime.job import GROUPS, JobContext, run_name
from pipeline.tracking.store import sqlite_path

ROOT = Path(__file__).resolve().parents[1]
# What ../shared/reference/seed_softmax.py prints (torch 2.13.0, CPU); bench/ has the script.
REFERENCE_OUTPUT = ROOT / "tests" / "reference_output.txt"
EXPERIMENT = "softmax-regression"


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without a tracking URI (each test names its store), plus ``env``."""
    full = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**full, **(env or {})}


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    module: str = "pipeline.train",
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` the way a user does; capture its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(
    *args: str, cwd: Path, module: str = "pipeline.train", env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``python -m <module> args`` in the background, its output unbuffered."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env({"PYTHONUNBUFFERED": "1", **(env or {})}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def compose_job(*overrides: str) -> tuple[DictConfig, JobContext]:
    """The config and job context ``python -m pipeline.train overrides`` runs with."""
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    choices = {group: str(cfg.hydra.runtime.choices[group]) for group in GROUPS}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, JobContext(run_name=run_name(overrides), overrides=overrides, choices=choices)


def sqlite_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlflow.db'}"


def runs_of(uri: str, experiment: str = EXPERIMENT) -> list:
    """All runs of the experiment, oldest first ([] when the store or experiment is absent).

    A sqlite store that does not exist yet is not opened: MLflow would create it (racing the
    process under test) or wait a minute retrying."""
    database = sqlite_path(uri)
    if database is not None and not database.is_file():
        return []
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


TrainInProcess = Callable[..., tuple[Any, Any]]


def train_into(uri: str | None, *overrides: str) -> tuple[Any, Any]:
    """Validate and train ``overrides`` in this process into ``uri`` (None: the one they name):
    (the outcome, its run)."""
    from pipeline.stage import train

    cfg, job = compose_job(*overrides)
    if uri is not None:
        cfg.tracking.uri = uri
    validate(cfg)
    outcome = train(cfg, job)
    return outcome, MlflowClient(tracking_uri=cfg.tracking.uri).get_run(outcome.run_id)


@pytest.fixture(scope="module")
def train_in_process(tmp_path_factory: pytest.TempPathFactory) -> TrainInProcess:
    """``train_in_process(*overrides)``: a run trained in this process, in a module's store."""
    uri = sqlite_uri(tmp_path_factory.mktemp("store"))

    def run(*overrides: str) -> tuple[Any, Any]:
        return train_into(uri, *overrides)

    run.uri = uri  # type: ignore[attr-defined]
    return run


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A PostgreSQL cluster for this test worker (tests/services.py); each test creates its own
    fresh database with ``postgres.create_database()``."""
    from helpers.services import postgres_cluster

    with postgres_cluster() as server:
        yield server


@pytest.fixture(scope="session")
def slurm() -> Iterator[Any]:
    """A one-node Slurm cluster for this test worker; ``slurm.env`` points commands at it."""
    from helpers.services import slurm_cluster

    with slurm_cluster() as cluster:
        yield cluster


# The longest files first (seconds on 2 cores), so that the two xdist workers (one file each at
# a time) finish together instead of one waiting for a long file that started last.
LONGEST_FIRST = [
    "test_team_server.py",
    "test_slurm.py",
    "test_bench.py",
    "test_resume_sweeps.py",
    "test_resume.py",
    "test_launchers.py",
    "test_postgres.py",
    "test_rerun.py",
    "test_ui.py",
    "test_hardening.py",
    "test_server.py",
    "test_best_run.py",
    "test_compat.py",
    "test_multirun.py",
    "test_config.py",
    "test_lifecycle.py",
    "test_console.py",
    "test_real_data.py",
]


# Real services, interruptions and end-to-end runs that take minutes: `-m "not extended"` runs
# the rest, the core pipeline's tests, in about 3 minutes (the whole suite: about 13).
EXTENDED = {
    "test_team_server.py",
    "test_slurm.py",
    "test_postgres.py",
    "test_bench.py",
    "test_resume_sweeps.py",
    "test_resume.py",
    "test_best_run.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)
    for item in items:
        if item.path.name in EXTENDED:
            item.add_marker(pytest.mark.extended)


def epochs_lasting(seconds: float, *config: str) -> int:
    """How many epochs of ``config`` take about ``seconds`` on this machine, now."""
    from pipeline.config import compose_config
    from pipeline.config.build import build
    from pipeline.core.loop import train_epoch

    cfg = compose_config(list(config))
    data = build("data", cfg.data)
    model = build("model", cfg.model, in_features=data.n_features, out_features=data.n_classes)
    optimizer = build("optim", cfg.optim, params=model.parameters())
    batches = torch.Generator()
    train_epoch(model, optimizer, data.train, cfg.batch_size, batches)  # the first step imports
    start, epochs = time.perf_counter(), 0  # torch._dynamo (~1 s): not part of an epoch
    while time.perf_counter() - start < 1.0:
        train_epoch(model, optimizer, data.train, cfg.batch_size, batches)
        epochs += 1
    return int(epochs * seconds / (time.perf_counter() - start))
