"""The training stage: ``python -m pipeline.train [overrides]`` (``-m`` for a sweep).

Only Hydra and the config schemas are imported up front, so a config mistake is reported in
well under a second; torch and MLflow are loaded once the config is valid.

From Python, ``pipeline.train(*overrides)`` trains a run (``pipeline.api.train``): this module
is callable, so that it is that function too once it is imported as ``pipeline.train``.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import sys
import types
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from pipeline.config import register_configs, validate
from pipeline.errors import PipelineError, first_line
from pipeline.runtime import interrupts, slurm
from pipeline.runtime.help import register_resolvers
from pipeline.runtime.job import JobContext, record_job

if TYPE_CHECKING:
    from pipeline.api import Run
    from pipeline.stage import Outcome

log = logging.getLogger(__name__)
register_configs()
register_resolvers()


def train_job(cfg: DictConfig, job: JobContext) -> Outcome:
    """Validate, then train: the run's outcome."""
    validate(cfg)
    from pipeline.stage import train  # torch and MLflow load here, for a valid config only

    outcome = train(cfg, job)
    record_job(job, status="FINISHED")
    return outcome


def run_job(cfg: DictConfig, job: JobContext) -> float:
    """Validate, then train: the value a sweeper optimizes (``sweep.metric``)."""
    return train_job(cfg, job).value


def run_alone(cfg: DictConfig, job: JobContext) -> float:
    """A single run: a user's mistake (a PipelineError) is its one line on stderr, exit status 1.

    Hydra would frame that line with ``Error executing job with overrides: ...`` and a hint to
    set HYDRA_FULL_ERROR=1, which reads like a crash; with HYDRA_FULL_ERROR=1, Hydra reports it
    (a full trace), as it does any other exception.
    """
    try:
        return run_job(cfg, job)
    except PipelineError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(err, file=sys.stderr)
        raise SystemExit(1) from None


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    job = JobContext.current()
    if job.job_num is None:
        return run_alone(cfg, job)
    interrupts.install()  # in a job process of its own (submitit) too
    try:  # in a sweep, a failed job is recorded in its job dir and the others go on
        return run_job(cfg, job)
    except interrupts.Stop as stop:
        slurm.stopped(stop, "this run")  # a scheduler's signal or requeue: not an error
    except PipelineError as err:
        log.error("Job %d failed: %s", job.job_num, first_line(err))
        record_job(job, status="FAILED", reason=first_line(err))
    except Exception as err:
        log.exception("Job %d failed", job.job_num)
        record_job(job, status="FAILED", reason=f"{type(err).__name__}: {first_line(err)}")
    return math.nan


class _Command(types.ModuleType):
    """This module, callable as ``pipeline.api.train``."""

    def __call__(self, *overrides: str) -> Run:
        from pipeline.api import train

        return train(*overrides)


if __name__ != "__main__":
    sys.modules[__name__].__class__ = _Command

if __name__ == "__main__":
    interrupts.install()  # Ctrl-C and SIGTERM end the run KILLED, at an epoch boundary
    try:
        main()
        # Skip the interpreter's final garbage collections over torch's and MLflow's objects:
        # exiting is ~0.9 s faster (bench/overhead.py).
        gc.freeze()
    except KeyboardInterrupt as stop:
        if getattr(stop, "after_run", False):  # it came during the run's last writes
            print("Interrupted once the run had finished: it is FINISHED.", file=sys.stderr)
        else:
            print("Interrupted: the run was marked KILLED.", file=sys.stderr)
        sys.exit(130)
