"""Hydra callbacks: a sweep's store, parent run and summary, in the process that launches it."""

from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepTracking(Callback):
    """Before a sweep's jobs: the store, the experiment and the sweep's parent run.

    Parallel jobs that race to create a fresh sqlite database crash; with the database,
    experiment and parent run in place they only add runs, nested under the parent (its id
    is left in the sweep dir, so jobs in other processes or on other machines find it).
    After the jobs: a summary table, every cost curve and the best run, on the parent.
    """

    failure: str | None = None  # why the last sweep in this process failed, for the exit status

    def __init__(self) -> None:
        self.client: Any = None  # an MlflowClient, once a sweep starts
        self.parent_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient  # imported here: a single run needs none of it

        from pipeline import sweep
        from pipeline.tracking import prepare_store, resolve_tracking_uri

        uri = resolve_tracking_uri(config.tracking.uri)
        experiment_id = prepare_store(uri, config.tracking.experiment)
        self.client = MlflowClient(tracking_uri=uri)
        launcher = config.hydra.launcher.get("_target_", "").rsplit(".", 1)[-1]
        sweeper = config.hydra.sweeper.get("_target_", "").rsplit(".", 1)[-1]
        self.parent_id = sweep.start_parent(
            self.client,
            experiment_id,
            Path(config.hydra.sweep.dir),
            _named_overrides(config),
            launcher,
            sweeper,
        )
        atexit.register(self._close, "KILLED")  # if the sweep never reaches its end

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from pipeline import sweep

        parent = self.client.get_run(self.parent_id)
        results = sweep.collect(self.client, parent, Path(config.hydra.sweep.dir))
        metric, mode = config.tracking.best_metric, config.tracking.best_mode
        best = sweep.best(results, metric, mode)
        sweep.log_summary(self.client, parent, results, best, metric)
        optuna_results = Path(config.hydra.sweep.dir) / "optimization_results.yaml"
        if optuna_results.exists():
            self.client.log_artifact(self.parent_id, str(optuna_results))
        log.info("Sweep summary (parent run %s):\n%s", self.parent_id, sweep.table(results))
        if best is not None:
            log.info(
                "Best run by %s (%s): %s (%s)", metric, mode, best.run.info.run_name, best.run_id
            )
        failed = [r for r in results if r.status != "FINISHED"]
        self._close("FAILED" if failed else "FINISHED")
        if failed:  # Hydra ignores exceptions raised here: the entry point exits with status 1
            SweepTracking.failure = (
                f"Sweep had failures: {len(failed)} of {len(results)} jobs did not finish "
                f"(jobs {', '.join(str(r.num) for r in failed)}; see the summary above)"
            )

    def _close(self, status: str) -> None:
        """End the parent run once (the first call wins: normal end, or KILLED at exit)."""
        if self.parent_id is None:
            return
        parent_id, self.parent_id = self.parent_id, None
        self.client.set_terminated(parent_id, status)


def _named_overrides(config: DictConfig) -> list[str]:
    """The sweep's overrides, less those that job run names leave out too (tracking.uri, ...)."""
    excluded = set(config.hydra.job.config.override_dirname.exclude_keys)
    return [
        o for o in config.hydra.overrides.task if o.split("=", 1)[0].lstrip("+~") not in excluded
    ]
