"""On bench/all.py's path for every benchmark but the Lightning one: ``import mlflow.pytorch``
then finds no Lightning (it imports it for autologging), as without the ``bench`` extra."""

raise ImportError("hidden by bench/all.py")
