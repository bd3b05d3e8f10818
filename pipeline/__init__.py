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
