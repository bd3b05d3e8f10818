"""A past run trained again: its recorded config (``run.files.recorded_config``) as Hydra
overrides, given to ``python -m pipeline.train`` in a child process.

``rerun`` trains it as a new run; ``resume`` continues the same run. Both go through the
training command, so the run is made exactly as any other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from mlflow.entities import Run

from pipeline.config.params import flatten_dict, is_run_setting
from pipeline.runtime.job import GROUPS, override_key

# Runs recorded before configs built objects from `_target_` named their group choice in the
# config itself (data.name: iris); today's runs record the choices as params (data: iris).
LEGACY_CHOICE_KEYS = {group: f"{group}.name" for group in GROUPS}


def recorded_overrides(run: Run, config: dict[str, Any]) -> list[str]:
    """The run's group choices and every recorded value (less run settings), as overrides."""
    values = flatten_dict(config)
    choices = {group: run.data.params[group] for group in GROUPS if group in run.data.params}
    for group, legacy_key in LEGACY_CHOICE_KEYS.items():
        legacy = values.pop(legacy_key, None)
        if group not in choices and legacy is not None:
            choices[group] = legacy
    return [f"{group}={choice}" for group, choice in choices.items()] + [
        f"{key}={hydra_value(value)}" for key, value in values.items() if not is_run_setting(key)
    ]


def hydra_value(value: Any) -> str:
    """``value`` in Hydra's override syntax (strings quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)


def merge(recorded: list[str], overrides: list[str]) -> list[str]:
    """``recorded``, less the keys ``overrides`` set, then ``overrides``."""
    overridden = {override_key(o) for o in overrides}
    return [o for o in recorded if override_key(o) not in overridden] + overrides


def train_again(overrides: list[str], uri: str) -> int:
    """Run ``python -m pipeline.train overrides`` against the store ``uri``; its exit status.

    The store goes through the environment, so no password is on a command line.
    """
    command = [sys.executable, "-m", "pipeline.train", *overrides]
    return subprocess.run(command, env={**os.environ, "MLFLOW_TRACKING_URI": uri}).returncode
