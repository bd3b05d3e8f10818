"""The one text-table formatter (``compare``, ``diff``, a sweep's summary), and ``compare``
fitting a terminal but printing its whole table to a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from conftest import cli_env, read_terminal, run_cli, sqlite_uri, train_into
from pipeline.runtime.text_table import fit_widths, format_table

HEADER = ["run", "status", "optim.lr", "objective", "final_cost", "final_accuracy", "run_id"]


def test_columns_are_padded_aligned_and_shortened_to_their_widths():
    rows = [["name", "value"], ["a", "1.5"], ["longer", "10"]]
    assert format_table(rows) == ["name    value", "a       1.5", "longer  10"]
    assert format_table(rows, right=[False, True]) == ["name    value", "a         1.5",
                                                       "longer     10"]  # fmt: skip
    assert format_table(rows, widths=[4, 5]) == ["name  value", "a     1.5", "lon…  10"]


def test_widths_fit_a_budget_step_by_step():
    widths = fit_widths([10, 30], [[10, 20], [4, 4]], 34)  # a gap of 2: 32 left
    assert widths == [10, 22]
    assert fit_widths([10, 30], [[10, 20], [4, 4]], 26) == [10, 14]  # the second step
    assert fit_widths([10, 30], [[10, 20]], 26) == [10, 20]  # the floors hold


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two short runs of the default experiment that differ in optim.lr."""
    uri = sqlite_uri(tmp_path_factory.mktemp("compare"))
    for lr in ("0.01", "0.1"):
        train_into(uri, "debug=fast", f"optim.lr={lr}")
    return uri


@pytest.mark.slow
def test_compare_piped_prints_the_whole_table(store, tmp_path):
    """Not 80 columns cut to 8 characters each (``optim.…  object…``): every name whole."""
    env = {key: "" for key in ("COLUMNS", "LINES")}
    result = run_cli("softmax-regression", "--tracking-uri", store, cwd=tmp_path,
                     module="pipeline.compare", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    title, header, *rows = result.stdout.splitlines()
    assert title == "2 runs of experiment 'softmax-regression', by objective (minimize)"
    assert header.split() == HEADER
    assert [row.split()[:3] for row in rows] == [
        ["debug=fast,optim.lr=0.1", "FINISHED", "0.1"],
        ["debug=fast,optim.lr=0.01", "FINISHED", "0.01"],
    ]
    assert all(len(row.split()[-1]) == 32 for row in rows)  # whole run ids
    assert max(map(len, result.stdout.splitlines())) > 80
    assert "…" not in result.stdout


@pytest.mark.slow
def test_compare_on_a_terminal_fits_its_width(store, tmp_path):
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))  # 60 columns
    env = cli_env()
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.compare", "softmax-regression", "--tracking-uri", store],
        cwd=tmp_path,
        env=env,
        stdout=terminal,
        stderr=subprocess.PIPE,
    )
    os.close(terminal)
    output = read_terminal(controller)
    assert process.wait(timeout=60) == 0, process.stderr.read()
    lines = output.decode().splitlines()
    assert len(lines) == 4  # the title, the header, 2 runs
    assert all(len(line) <= 60 for line in lines)
    assert max(map(len, lines)) > 50  # it uses the width it has
    assert "…" in lines[1]  # shortened, not wrapped
    assert lines[1].split()[:2] == ["run", "status"]
