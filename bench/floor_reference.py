"""The least a single-process tracked version of the reference script must do.

The reference script, run after importing Hydra and MLflow and opening the sqlite store in
./mlruns (the default store, which the pipeline creates): what any one-process pipeline that
composes its config with Hydra and tracks runs in MLflow's sqlite store pays before it logs a
single value. ``overhead.py`` times it beside the plain script and the tracked run.
"""

import runpy
from pathlib import Path

import hydra  # noqa: F401
from mlflow.tracking import MlflowClient

MlflowClient(f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}").search_experiments()
runpy.run_path(str(Path(__file__).with_name("plain_reference.py")), run_name="__main__")
