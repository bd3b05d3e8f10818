"""The benchmarks still run: ``bench/all.py --smoke`` runs each once with tiny settings and
prints the README's performance table (the numbers themselves mean nothing here)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from conftest import ROOT, cli_env
from helpers.zygote import python_shim


def benchmarks() -> dict:
    """``bench/all.py``'s benchmarks, by name."""
    spec = importlib.util.spec_from_file_location("bench_all", ROOT / "bench" / "all.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.BENCHMARKS


def table_rows(table: str) -> list[list[str]]:
    """The cells of each row of the table (``| what | command | ...`` up to a blank line)."""
    lines = table.split("\n\n", 1)[0].strip().splitlines()[2:]  # less the header and the rule
    return [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in lines]


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~30 processes of torch + MLflow
def test_every_benchmark_runs_and_makes_the_table(tmp_path):
    """Every benchmark runs (the ``test`` extra installs the ``bench`` one, Lightning, too).
    A row that says ``not run`` or ``failed`` fails. Its ~30 processes are forked from this
    worker's zygote (``BENCH_PYTHON``, then ``sys.executable`` in each: the numbers mean
    nothing here, the scripts' working does)."""
    wanted = benchmarks()
    assert {"overhead", "loop", "scale", "sweep", "marginal", "parallel", "vs_lightning", "load",
            "compare", "vectorized"} <= set(wanted)  # fmt: skip
    env = cli_env()
    shim = python_shim(tmp_path / "bin", env)
    env |= {"BENCH_PYTHON": str(shim), "ZYGOTE_PYTHON": str(shim)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "all.py"), "--smoke"],
        env=env,
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout.split("| what | command |", 1)[1]
    rows = table_rows(table)
    assert len(rows) == len(wanted)
    for (what, command, result, target), (name, bench) in zip(rows, wanted.items(), strict=True):
        assert what == bench.what
        assert command == f"`cd bench && python {' '.join(bench.args)}`", name
        assert not result.startswith(("not run", "failed")), f"{name}: {result}"
        assert target, f"{name}: no target verdict"
    assert "failed" not in table
    assert "Measured" in table
    assert "cores" in table
