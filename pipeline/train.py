"""The training stage: ``python -m pipeline.train [overrides]`` (``-m`` for a sweep).

Only Hydra and the config schemas are imported up front, so a config mistake is reported in
well under a second; torch and MLflow are loaded once the config is valid.
"""

from __future__ import annotations

import gc
import logging
import math
import sys

import hydra
from omegaconf import DictConfig

from pipeline import interrupts
from pipeline.callbacks import SweepTracking
from pipeline.config import PipelineError, first_line, register_configs, validate
from pipeline.job import JobContext

log = logging.getLogger(__name__)
register_configs()


def run_job(cfg: DictConfig, job: JobContext) -> float:
    validate(cfg)
    from pipeline.training import train

    return train(cfg, job)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    job = JobContext.current()
    if job.job_num is None:
        return run_job(cfg, job)
    try:  # in a sweep, a failed job is reported and the others go on
        return run_job(cfg, job)
    except PipelineError as err:
        log.error("Job %d failed: %s", job.job_num, first_line(err))
    except Exception:
        log.exception("Job %d failed", job.job_num)
    return math.nan


if __name__ == "__main__":
    interrupts.install()  # Ctrl-C and SIGTERM end the run KILLED, at an epoch boundary
    try:
        main()
        if SweepTracking.failure:
            print(SweepTracking.failure, file=sys.stderr)
            sys.exit(1)
        # Skip the interpreter's final garbage collections over torch's and MLflow's objects:
        # exiting is ~0.9 s faster (bench/overhead.py).
        gc.freeze()
    except KeyboardInterrupt:
        print("Interrupted: the run was marked KILLED.", file=sys.stderr)
        sys.exit(130)
