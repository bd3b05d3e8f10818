"""Sweeps: the Hydra callbacks around a multirun (``callbacks``) and its parent run (``parent``)."""
