"""What a run needs to know about the Hydra job it runs in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

PARENT_RUN_FILE = "mlflow_parent_run_id"  # in a sweep's dir: the run its jobs nest under


@dataclass(frozen=True)
class JobContext:
    """The Hydra job's name, overrides, output dir and sweep (defaults when run without Hydra)."""

    run_name: str = "default"
    overrides: tuple[str, ...] = ()
    job_num: int | None = None  # set in a sweep
    output_dir: Path | None = None
    parent_run_id: str | None = None  # the sweep's MLflow run

    @classmethod
    def current(cls) -> JobContext:
        if not HydraConfig.initialized():
            return cls()
        hydra = HydraConfig.get()
        multirun = hydra.mode.name == "MULTIRUN"
        parent_file = Path(hydra.sweep.dir) / PARENT_RUN_FILE
        parent = parent_file.read_text().strip() if multirun and parent_file.exists() else None
        return cls(
            run_name=hydra.job.override_dirname or "default",
            overrides=tuple(hydra.overrides.task),
            job_num=hydra.job.num if multirun else None,
            output_dir=Path(hydra.runtime.output_dir),
            parent_run_id=parent,
        )
