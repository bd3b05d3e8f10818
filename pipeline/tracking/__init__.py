"""MLflow: everything the pipeline keeps in a tracking store, in five sub-packages, each using
only those above it in this list:

- ``store``: where runs are stored and how to reach them: the URI, opening or creating the
  store, finding a run (``access``); PostgreSQL checked first (``postgres``); a URI's password
  moved to ``PGPASSWORD`` (``password``); secrets masked in all text written (``redact``); the
  UI's addresses (``serving``);
- ``resume``: which runs can be resumed (``state``), what makes two runs the same experiment
  (``identity``), and a past run trained again (``relaunch``);
- ``run``: one run's records, from opening it to closing it (``lifecycle``): metrics, config
  and files, the model, provenance, checkpoints and datasets;
- ``sweep``: a sweep's Hydra callbacks, its parent run, its jobs' results, table and plot;
- ``query``: what the commands that read runs ask: finding and ranking them (``lookup``), what
  differs between two (``differences``), the Model Registry (``registry``).

The names of the tags they write and read are ``pipeline.tags``.
"""

import os

# The pipeline prints its own last lines for a run; MLflow's INFO lines ("Validating input
# example against model signature") and its "View run ... at" lines against a server would
# say the same again.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# With tqdm installed (optuna brings it), MLflow draws a progress bar per artifact download.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
