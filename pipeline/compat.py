"""Module paths that earlier releases recorded, kept importable so their runs still load.

Runs recorded before the package was grouped by concern (0.1.0) pickled their models naming
``pipeline.model.Standardize``; unpickling them imports ``pipeline.model``, which is now
``pipeline.core.model``. Sweeps on Slurm launched before ``tracking`` was grouped (0.2.0) left
their Hydra callbacks pickled in the sweep dir (submitit pickles them with each job), naming
``pipeline.tracking.callbacks`` and ``pipeline.tracking.secrets``. ``MovedModules`` answers
such imports with the module's new home. (Logged models name no ``tracking`` module: the
``classifier`` model is loaded from its own copy of its file.)
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
from collections.abc import Sequence
from types import ModuleType

MOVED = {
    "pipeline.model": "pipeline.core.model",
    "pipeline.tracking.callbacks": "pipeline.tracking.sweep.callbacks",
    "pipeline.tracking.secrets": "pipeline.tracking.store.password",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An import of an old module path gets the module at its new path."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported at its new path."""
