"""Training in several processes at once without each paying the pipeline's imports (~7 s of CPU
a process on 2 cores): they are forked from one server process that imported it once
(multiprocessing's forkserver, which lives as long as this test worker). For tests where
processes running together are the point (a race on a fresh database); the command line itself
is tested with ``run_cli``.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from pathlib import Path


def _train(uri: str, overrides: list[str], env: dict[str, str], error: Path) -> None:
    """In the forked process: train ``overrides`` into ``uri`` with ``env``; on an error, its
    traceback in ``error`` and exit status 1."""
    os.environ.update(env)
    try:
        from conftest import train_into

        train_into(uri, *overrides)
    except BaseException:
        error.write_text(traceback.format_exc())
        raise SystemExit(1) from None


def train_together(
    uri: str, jobs: list[list[str]], env: dict[str, str], errors: Path
) -> tuple[list[int | None], str]:
    """Start one process per job (its overrides) at once, each training into ``uri`` with
    ``env`` added to its environment; wait for all: their exit statuses, and their errors."""
    context = multiprocessing.get_context("forkserver")
    # once per worker; torch._dynamo: what the first optimizer step imports (0.9 s a process)
    context.set_forkserver_preload(["conftest", "pipeline.stage", "torch._dynamo"])
    errors.mkdir(parents=True, exist_ok=True)
    processes = [
        context.Process(target=_train, args=(uri, job, env, errors / f"{number}.txt"))
        for number, job in enumerate(jobs)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    for process in processes:
        if process.is_alive():
            process.kill()
    found = "\n".join(path.read_text() for path in sorted(errors.glob("*.txt")))
    return [process.exitcode for process in processes], found
