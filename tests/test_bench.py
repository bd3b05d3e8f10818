"""The benchmarks still run: ``bench/all.py --smoke`` runs each once with tiny settings and
prints the README's performance table (the numbers themselves mean nothing here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, cli_env


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~30 processes of torch + MLflow: 2-5 min on 2 busy cores
def test_every_benchmark_runs_and_makes_the_table():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "all.py"), "--smoke"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout.split("| what | command |", 1)[1]
    for script in ("overhead", "loop", "scale", "sweep", "marginal", "parallel", "load", "compare"):
        assert f"python {script}.py" in table
    assert "failed" not in table
    assert "Measured" in table
    assert "cores" in table
