"""The console: a live progress line on a terminal (piped output: test_reference_run), and a
user's mistake as its one line and nothing else."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from conftest import read_terminal, run_cli


def test_a_terminal_gets_a_live_progress_line(tmp_path):
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.train", "epochs=3000", "log_every=1000"],
        cwd=tmp_path,
        env=env,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    output = read_terminal(controller)
    assert process.wait(timeout=60) == 0
    text = output.decode()
    assert "\r\x1b[2Kepoch " in text
    assert " epochs/s" in text
    assert "Epoch 3000/3000 Cost: " in text


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (["optim.lr=0"], "Config error: optim.lr must be > 0, got 0.0. Fix: e.g. optim.lr=0.1"),
        (
            ["optim.momentum=2"],
            "Config error: optim.momentum must be in [0, 1), got 2.0. Fix: e.g. optim.momentum=0.9",
        ),
        (
            ["data=csv", "data.path=missing.csv"],
            "CSV error: file not found: missing.csv. "
            "Fix: check the path (relative paths start from {cwd})",
        ),
    ],
)
def test_a_mistake_prints_its_one_line_and_nothing_else(tmp_path, overrides, line):
    """No ``Error executing job with overrides`` before it, no HYDRA_FULL_ERROR hint after."""
    result = run_cli(*overrides, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == line.format(cwd=tmp_path) + "\n"
    assert result.stdout == ""
    assert not (tmp_path / "mlruns").exists()


def test_hydra_full_error_still_shows_a_real_exceptions_traceback(tmp_path):
    """A bug, not a mistake: a data ``_target_`` that returns no dataset fails in the stage."""
    crash = ("data._target_=builtins.dict",)
    for env in ({"HYDRA_FULL_ERROR": "1"}, {}):
        result = run_cli(*crash, cwd=tmp_path, env=env)
        assert result.returncode == 1
        assert "Traceback (most recent call last):" in result.stderr
        assert "AttributeError: 'dict' object has no attribute 'standardize'" in result.stderr
        hint = "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."
        assert (hint in result.stderr) == (not env)
        # HYDRA_FULL_ERROR=1: not trimmed, Hydra's own frames are there.
        assert ('hydra/_internal/utils.py", line' in result.stderr) == bool(env)
