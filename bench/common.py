"""What the benchmarks share: timing a whole process, and a min/median/max line."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], cwd: str) -> float:
    """Wall seconds of ``command`` run in ``cwd`` (with the default store); exit if it fails."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def summary(name: str, values: list[float], unit: str = "s", note: str = "") -> str:
    """``name  min ..  median ..  max ..`` (and a note, e.g. the target)."""
    line = (
        f"{name:34s} min {min(values):7.3f}{unit}  median {statistics.median(values):7.3f}{unit}"
        f"  max {max(values):7.3f}{unit}"
    )
    return f"{line}   {note}" if note else line


def ratio(measured: list[float], baseline: list[float]) -> list[float]:
    """Each measured value over the baseline of its round."""
    return [m / b for m, b in zip(measured, baseline, strict=True)]


def interleaved(commands: list[list[str]], rounds: int, warm_up: bool = True) -> list[list[float]]:
    """Seconds of each command per round, in turn, in one fresh temp dir.

    A warm-up of each first, the last one first (a tracked command creates the store; the file
    cache warms up); without ``warm_up`` (smoke runs) the store is a copy of the pipeline's
    empty one, as a tracked command would make it (a plain MLflow client runs its migrations
    instead, seconds in the first command timed).
    """
    with tempfile.TemporaryDirectory() as cwd:
        for command in reversed(commands) if warm_up else []:
            timed(command, cwd)
        if not warm_up:
            from pipeline.tracking.store.template import build_empty_store

            Path(cwd, "mlruns").mkdir()
            build_empty_store(Path(cwd, "mlruns", "mlflow.db"))
        seconds: list[list[float]] = [[] for _ in commands]
        for _ in range(rounds):
            for command, times in zip(commands, seconds, strict=True):
                times.append(timed(command, cwd))
    return seconds
