"""MLflow: where runs are stored (``store``), a run's lifecycle (``runs``), what it records
(``metrics``, ``records``, ``models``, ``provenance``, ``checkpoints``), secrets kept out
(``redact``), which runs can be resumed (``resumable``, ``identity``, ``recorded``), sweeps'
parent runs (``sweep``, ``callbacks``) and UI addresses (``addresses``)."""

import os

# The pipeline prints its own last lines for a run; MLflow's INFO lines ("Validating input
# example against model signature") and its "View run ... at" lines against a server would
# say the same again.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# With tqdm installed (optuna brings it), MLflow draws a progress bar per artifact download.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
