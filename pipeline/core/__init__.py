"""The training core, free of MLflow: data (``data``, ``tables``), models (``model``), the loop
(``loop``), metrics (``evaluate``) and seeding (``determinism``)."""
