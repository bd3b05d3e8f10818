"""What a run needs to know about the Hydra job it runs in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig


@dataclass(frozen=True)
class JobContext:
    """The Hydra job's name, overrides and output dir (defaults when called without Hydra)."""

    run_name: str = "default"
    overrides: tuple[str, ...] = ()
    job_num: int | None = None
    output_dir: Path | None = None

    @classmethod
    def current(cls) -> JobContext:
        if not HydraConfig.initialized():
            return cls()
        hydra = HydraConfig.get()
        multirun = hydra.mode.name == "MULTIRUN"
        return cls(
            run_name=hydra.job.override_dirname or "default",
            overrides=tuple(hydra.overrides.task),
            job_num=hydra.job.num if multirun else None,
            output_dir=Path(hydra.runtime.output_dir),
        )
