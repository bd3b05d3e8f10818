"""The four jobs of the launcher tests' sweep, each trained alone in process: the numbers every
launcher must give. Trained once per test session, whichever worker asks first; the others
read the recorded histories (a JSON file in the session's temp dir, under a file lock)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from filelock import FileLock

from conftest import cost_history, sqlite_uri, train_into

EPOCHS = "epochs=50"
JOBS = {
    f"optim.lr={lr},seed={seed}": (f"optim.lr={lr}", f"seed={seed}", EPOCHS)
    for lr in ("0.01", "0.1")
    for seed in (1, 2)
}


def histories_alone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[float]]:
    """Each job's cost history, by its run name (``optim.lr=0.01,seed=1``)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # one process: nothing to share
        return train(tmp_path_factory.mktemp("alone"))
    shared = tmp_path_factory.getbasetemp().parent  # the session's dir, above each worker's
    recorded = shared / "histories_alone.json"
    with FileLock(f"{recorded}.lock"):
        if not recorded.exists():
            recorded.write_text(json.dumps(train(tmp_path_factory.mktemp("alone"))))
        return json.loads(recorded.read_text())


def train(directory: Path) -> dict[str, list[float]]:
    uri = sqlite_uri(directory)
    return {
        name: cost_history(uri, train_into(uri, *overrides)[0].run_id)
        for name, overrides in JOBS.items()
    }
