"""Hydra callbacks."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline.tracking import prepare_store, resolve_tracking_uri


class PrepareStore(Callback):
    """Create the tracking store and experiment before a sweep's jobs start.

    Parallel jobs that race to create a fresh sqlite database crash; with the database
    and experiment in place they only add runs.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        prepare_store(resolve_tracking_uri(config.tracking.uri), config.tracking.experiment)
