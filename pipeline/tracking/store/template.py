"""A new sqlite store in milliseconds: a copy of an empty one that MLflow made.

MLflow builds a new sqlite store by running its ~60 schema migrations, about 2 s. The first
store this MLflow version makes on a machine is built that way, then kept, without its
``Default`` experiment, as ``empty-mlflow-<version>.db`` in the cache directory
(``$PIPELINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/pipeline``, else ``~/.cache/pipeline``). Each
later new store is a copy of it; opening the copy, MLflow adds the ``Default`` experiment (its
artifact location is the opening process's, as for a store MLflow builds), so the store is
the one MLflow would have made. Where the cache cannot be written, stores are built as before.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient


def cache_dir() -> Path:
    if found := os.environ.get("PIPELINE_CACHE_DIR"):
        return Path(found)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pipeline"


def build_empty_store(target: Path) -> None:
    """Make ``target`` an empty store of this MLflow version (``target`` does not exist)."""
    template = cache_dir() / f"empty-mlflow-{mlflow.__version__}.db"
    if not template.is_file():
        try:
            _build_template(template)
        except OSError:  # a read-only home: build the store itself
            MlflowClient(tracking_uri=f"sqlite:///{target}")
            return
    shutil.copyfile(template, target)


def _build_template(template: Path) -> None:
    template.parent.mkdir(parents=True, exist_ok=True)
    building = template.with_name(f".{template.name}.{os.getpid()}.new")
    MlflowClient(tracking_uri=f"sqlite:///{building}").search_experiments()  # the migrations
    with sqlite3.connect(building) as db:  # MLflow adds it again, where the store is opened
        db.execute("DELETE FROM experiment_tags WHERE experiment_id = 0")
        db.execute("DELETE FROM experiments WHERE experiment_id = 0")
    db.close()
    os.replace(building, template)  # whole, or not there: a process racing builds its own
