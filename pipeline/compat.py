"""Module paths that earlier releases recorded, kept importable so their runs still load.

Runs recorded before the package was grouped by concern pickled their models naming
``pipeline.model.Standardize``; unpickling them imports ``pipeline.model``, which is now
``pipeline.core.model``. ``MovedModules`` answers such imports with the module's new home.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
from collections.abc import Sequence
from types import ModuleType

MOVED = {"pipeline.model": "pipeline.core.model"}


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
