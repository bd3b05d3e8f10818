"""Tracked softmax-regression experiments: PyTorch + Hydra + MLflow.

The commands users run are the top-level modules (``python -m pipeline.<command>``):
``train`` (a Hydra app; ``stage`` is what one run does), ``predict``, ``rerun``, ``resume``
and ``ui``, which follow one command-line convention (``cli``). Below them:

- ``config``: typed schemas for ``conf/`` and the value rules;
- ``core``: data, models, the training loop and metrics (no MLflow);
- ``tracking``: the MLflow store, run lifecycle, what a run records, sweeps;
- ``runtime``: the Hydra job, the console, signals, the process a run lives in.
"""

import sys
from importlib.metadata import PackageNotFoundError, version

from pipeline.compat import MovedModules

try:
    __version__ = version("pipeline")
except PackageNotFoundError:  # loaded from a model's copy of the code, not installed
    __version__ = "unknown"

if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(MovedModules())
