"""Tracked softmax-regression experiments: PyTorch + Hydra + MLflow.

The commands users run are the top-level modules (``python -m pipeline.<command>``):
``train`` (a Hydra app; ``stage`` is what one run does), and ``predict``, ``rerun``, ``resume``,
``ui``, ``compare``, ``diff`` and ``register``, which follow one command-line convention
(``cli``). Below them:

- ``tracking``: MLflow: the store, one run's records, resuming, sweeps, and the queries of the
  commands that read runs, each a sub-package;
- ``runtime``: the Hydra job, the console, signals, the process a run lives in;
- ``core``: data, models, the training loop and metrics (no MLflow, no ``runtime``);
- ``config``: typed schemas for ``conf/`` and the value rules;
- ``tags`` (the names of the tags runs carry), ``errors`` and ``compat`` (module paths that
  earlier releases recorded).

The Python API (``api``) is exported here, loaded on first use so that ``import pipeline`` and
the commands start no slower: ``pipeline.train``, ``sweep``, ``runs``, ``history``, ``load``,
``Run``, ``Sweep``, ``Model`` and the errors. (``pipeline.train`` is also the command's module,
which is callable as the API's ``train``.)
"""

import importlib
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from pipeline.compat import MovedModules

if TYPE_CHECKING:
    from pipeline.api import (
        Model,
        OverrideError,
        PipelineError,
        Run,
        Sweep,
        SweepFailed,
        history,
        load,
        runs,
        sweep,
        train,
    )

__all__ = [
    "Model",
    "OverrideError",
    "PipelineError",
    "Run",
    "Sweep",
    "SweepFailed",
    "__version__",
    "history",
    "load",
    "runs",
    "sweep",
    "train",
]
API = frozenset(__all__) - {"__version__"}

try:
    __version__ = version("pipeline")
except PackageNotFoundError:  # loaded from a model's copy of the code, not installed
    __version__ = "unknown"

if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(MovedModules())


def __getattr__(name: str) -> Any:
    """The API's names, imported on first use (``train``: the command's callable module)."""
    if name == "train":
        return importlib.import_module("pipeline.train")
    if name in API:
        return getattr(importlib.import_module("pipeline.api"), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
