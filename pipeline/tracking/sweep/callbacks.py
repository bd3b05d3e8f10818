"""Hydra callbacks: a sweep's store, parent run and summary, in the process that launches it."""

from __future__ import annotations

import atexit
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline.config.params import is_run_setting
from pipeline.errors import Fatal, SweepFailed, fatal_in_callback
from pipeline.runtime.job import override_key, write_sweep_file

log = logging.getLogger(__name__)


class SweepTracking(Callback):
    """Before a sweep's jobs: the store, the experiment and the sweep's parent run.

    Parallel jobs that race to create a fresh sqlite database crash; with the database,
    experiment and parent run in place they only add runs, nested under the parent (its id
    is left in the sweep dir, so jobs in other processes or on other machines find it).
    After the jobs: a summary table, every cost curve and the best run, on the parent, and the
    outcome in the sweep dir's ``sweep.json``; a failed job makes the exit status 1.
    """

    last: SweepTracking | None = None  # the sweep this process launched last (for the Python API)

    def __init__(self) -> None:
        self.client: Any = None  # an MlflowClient, once a sweep starts
        self.experiment_id = ""
        self.parent_id: str | None = None  # until the parent run is closed
        self.sweep_run_id = ""  # the parent run, kept once it is closed

    @fatal_in_callback  # a store or cluster that cannot be used stops the sweep here
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from pipeline.runtime import slurm

        on_slurm = slurm.is_slurm(config.hydra.launcher)
        if on_slurm:  # first: before MLflow loads, before any run
            slurm.check_cluster(config.hydra.launcher)
        from mlflow.tracking import MlflowClient  # imported here: a single run needs none of it

        from pipeline.tracking.store.access import prepare_store, resolve_tracking_uri
        from pipeline.tracking.sweep.parent import start_parent

        uri = resolve_tracking_uri(config.tracking.uri)
        if on_slurm:  # the store as the jobs will see it, from the nodes
            slurm.check_tracking_uri(uri, config.hydra.launcher.get("partition"))
        self.experiment_id = prepare_store(uri, config.tracking.experiment)
        self.client = MlflowClient(tracking_uri=uri)
        overrides = [o for o in config.hydra.overrides.task if not is_run_setting(override_key(o))]
        self.parent_id = start_parent(
            self.client,
            self.experiment_id,
            Path(config.hydra.sweep.dir),
            overrides,
            swept_keys(config),
            _short_name(config.hydra.launcher),
            _short_name(config.hydra.sweeper),
            objective=(config.sweep.metric.name, config.sweep.direction.name),
            resume=config.sweep.resume,
        )
        self.sweep_run_id = self.parent_id
        SweepTracking.last = self
        atexit.register(self.close, "KILLED")  # if the sweep never reaches its end

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from pipeline.tracking.store.serving import run_address
        from pipeline.tracking.sweep import results
        from pipeline.tracking.sweep.parent import log_summary
        from pipeline.tracking.sweep.table import table

        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = results.collect(self.client, self.experiment_id, sweep_dir)
        metric, direction = config.sweep.metric.name, config.sweep.direction.name
        best = results.best(self.client, self.experiment_id, jobs, metric, direction)
        log_summary(self.client, self.parent_id, jobs, best, metric)
        optuna_results = sweep_dir / "optimization_results.yaml"
        if optuna_results.exists():
            self.client.log_artifact(self.parent_id, str(optuna_results))
        log.info("Sweep summary (parent run %s):\n%s", self.parent_id, table(jobs))
        if best is not None:
            log.info(
                "Best run by %s (%s): %s (%s)", metric, direction, best.run.run_name,
                best.run_id,
            )  # fmt: skip
        address = run_address(self.client.tracking_uri, self.experiment_id, self.parent_id)
        log.info("Sweep's parent run %s; view it at %s", self.parent_id, address)
        failed = [r.num for r in jobs if r.status != "FINISHED"]
        write_sweep_file(sweep_dir, jobs=len(jobs), failed_jobs=failed)
        self.close("FAILED" if failed else "FINISHED")
        if failed:  # the sweep's exit status (Hydra turns exceptions raised here into warnings)
            raise Fatal(
                SweepFailed(
                    f"Sweep had failures: {len(failed)} of {len(jobs)} jobs did not finish "
                    f"(jobs {', '.join(map(str, failed))}; see the summary above)"
                )
            )

    def close(self, status: str) -> None:
        """End the parent run once (the first call wins: normal end, or KILLED at exit)."""
        if self.parent_id is None:
            return
        parent_id, self.parent_id = self.parent_id, None
        self.client.set_terminated(parent_id, status)
        group = sys.modules.get("pipeline.group")  # loaded where a launcher trained in groups
        if group is not None:
            group.release_heap()  # what the launcher kept frozen through the summary


def swept_keys(config: DictConfig) -> list[str]:
    """Keys that take several values in the sweep: from the command line or the sweeper's
    ``params`` (``optim.lr=0.01,0.1``, ``tag(log, interval(1e-3, 1))``)."""
    params = config.hydra.sweeper.get("params") or {}
    lines = [*config.hydra.overrides.task, *(f"{key}={value}" for key, value in params.items())]
    parsed = OverridesParser.create().parse_overrides(lines)
    return sorted({o.key_or_group for o in parsed if o.is_sweep_override()})


def _short_name(node: DictConfig) -> str:
    return str(node.get("_target_", "")).rsplit(".", 1)[-1]
