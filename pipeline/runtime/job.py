"""What a run needs to know about the Hydra job it runs in: its name, overrides, choices, dirs
and, in a sweep, the sweep's parent run; and the two files a sweep's jobs share through their
dirs: the sweep dir's ``sweep.json`` and each job dir's ``job.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pipeline.config.params import is_run_setting

SWEEP_FILE = "sweep.json"  # in a sweep's dir: its parent run and swept keys, for every job
GROUPS = ("data", "model", "optim", "scheduler")  # config groups whose choice is a run param


def override_key(override: str) -> str:
    """``+optim.lr=0.1`` -> ``optim.lr``."""
    return override.split("=", 1)[0].lstrip("+~")


def run_name(overrides: list[str] | tuple[str, ...], keys: set[str] | None = None) -> str:
    """The overrides (only those of ``keys``, if given), sorted: ``optim.lr=0.01,seed=2``."""
    kept = [
        o
        for o in overrides
        if not is_run_setting(override_key(o)) and (keys is None or override_key(o) in keys)
    ]
    return ",".join(sorted(kept)) or "default"


@dataclass(frozen=True)
class JobContext:
    """The Hydra job's name, overrides, choices and dirs (defaults when run without Hydra)."""

    run_name: str = "default"
    overrides: tuple[str, ...] = ()
    choices: dict[str, str] = field(default_factory=dict)  # config group -> chosen file
    job_num: int | None = None  # set in a sweep
    output_dir: Path | None = None
    sweep_dir: Path | None = None
    parent_run_id: str | None = None  # the sweep's MLflow run

    @classmethod
    def current(cls) -> JobContext:
        return cls.of(HydraConfig.get()) if HydraConfig.initialized() else cls()

    @classmethod
    def of(cls, hydra: DictConfig) -> JobContext:
        """The job that the ``hydra`` node of its composed config describes."""
        overrides = tuple(hydra.overrides.task)
        choices = {g: str(hydra.runtime.choices[g]) for g in GROUPS if g in hydra.runtime.choices}
        context = cls(
            run_name=run_name(overrides),
            overrides=overrides,
            choices=choices,
            output_dir=Path(hydra.runtime.output_dir),
        )
        if hydra.mode.name != "MULTIRUN":
            return context
        sweep_dir = Path(hydra.sweep.dir)
        sweep_file = sweep_dir / SWEEP_FILE
        sweep = json.loads(sweep_file.read_text()) if sweep_file.exists() else {}
        return cls(
            run_name=run_name(overrides, set(sweep.get("swept", [])) or None),
            overrides=overrides,
            choices=choices,
            job_num=hydra.job.num,
            output_dir=context.output_dir,
            sweep_dir=sweep_dir,
            parent_run_id=sweep.get("parent_run_id"),
        )


def write_sweep_file(sweep_dir: Path, **facts: object) -> None:
    """Add ``facts`` to the sweep dir's ``sweep.json``."""
    path = sweep_dir / SWEEP_FILE
    known = json.loads(path.read_text()) if path.exists() else {}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**known, **facts}))


JOB_FILE = "job.json"  # in a job's output dir: its run id and how it ended, for the sweep summary


def record_job(job: JobContext, **facts: str | None) -> None:
    """Add ``facts`` (run_id, status, reason) to the job's ``job.json``, in a sweep."""
    if job.job_num is None or job.output_dir is None:
        return
    path = job.output_dir / JOB_FILE
    known = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**known, **facts}))


def read_job(job_dir: Path) -> dict[str, str]:
    """What ``record_job`` left in ``job_dir`` ({} if nothing)."""
    path = job_dir / JOB_FILE
    return json.loads(path.read_text()) if path.exists() else {}
