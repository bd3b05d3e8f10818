"""The least a tracked version of the reference script must do, on this stack.

    python floor_reference.py [--two-process]

The reference script, plus what any pipeline that composes its config with Hydra and tracks
runs in MLflow's sqlite store pays before it logs a single value: importing Hydra and MLflow
and opening the store in ./mlruns (the default store, which the pipeline creates). Like the
pipeline, it skips the final garbage collections at exit.

With ``--two-process``, a second process imports MLflow and opens the store while this one
trains, and imports ``mlflow.pytorch`` (so torch) as it must to log the trained model: the
floor of a design that tracks from a separate process, on the second core.
``overhead.py`` times both beside the plain script and the tracked run.
"""

import gc
import runpy
import subprocess
import sys
from pathlib import Path

import hydra  # noqa: F401

PLAIN = str(Path(__file__).with_name("plain_reference.py"))
OPEN_STORE = f"""
from mlflow.tracking import MlflowClient
MlflowClient({f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}"!r}).search_experiments()
"""
TRACKER = f"{OPEN_STORE}\nimport mlflow.pytorch\nimport gc\ngc.freeze()"

if "--two-process" in sys.argv:
    tracker = subprocess.Popen([sys.executable, "-c", TRACKER])
    runpy.run_path(PLAIN, run_name="__main__")
    sys.exit(tracker.wait())
exec(OPEN_STORE)
runpy.run_path(PLAIN, run_name="__main__")
gc.freeze()
