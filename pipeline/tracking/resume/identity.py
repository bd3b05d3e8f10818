"""What makes two runs the same experiment: the same resolved config, code and data.

Sweeps use it to skip a job whose experiment already has a FINISHED run (``run.key`` tag), as
DVC's run cache does; changed code or data makes a new key, so the job runs again.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig

import pipeline
from pipeline.config import CONF_DIR
from pipeline.config.params import is_run_setting, params

PACKAGE_DIR = Path(pipeline.__file__).resolve().parent
PACKAGE_ROOT = PACKAGE_DIR.parent


@functools.cache
def code_digest() -> str:
    """SHA-256 of the package's Python files and ``conf/``'s YAML files, as they are on disk:
    it changes with the code or the configs, committed or not."""
    sha = hashlib.sha256()
    for root, pattern in ((PACKAGE_DIR, "*.py"), (CONF_DIR, "*.yaml")):
        for path in sorted(root.rglob(pattern)):
            sha.update(str(path.relative_to(root.parent)).encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()


def _digest(facts: dict) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def run_key(cfg: DictConfig, choices: dict[str, str], data_digest: str) -> str:
    """A run's experiment: its resolved config (less the run settings) and group choices, the
    code and the data. The same key gives the same numbers."""
    return _digest({"params": params(cfg, choices), "code": code_digest(), "data": data_digest})


def sweep_key(overrides: list[str], sweeper: str) -> str:
    """A sweep: its overrides (less the run settings), its sweeper and the code."""
    kept = sorted(o for o in overrides if not is_run_setting(o.split("=", 1)[0].lstrip("+~")))
    return _digest({"overrides": kept, "sweeper": sweeper, "code": code_digest()})
