"""Copies of composed configs, fast: a pickled config unpickles ~4x faster than
``copy.deepcopy`` copies it (1.1 ms against 4.5 ms for this project's config).

Where a config does not pickle, it is deep-copied instead. That happens on a Slurm node: Hydra's
plugin scan there executes the submitit launcher's config module a second time, so the class of
its structured config (``SlurmQueueConf``) is no longer the one its module names, and pickle
refuses it."""

from __future__ import annotations

import copy
import pickle

from omegaconf import DictConfig, open_dict, read_write

Kept = bytes | DictConfig  # a config kept to be copied: pickled, or itself


def keep(config: DictConfig) -> Kept:
    """``config`` pickled, or a copy of it where it does not pickle."""
    try:
        return pickle.dumps(config)
    except pickle.PicklingError:
        return copy.deepcopy(config)


def copy_of(kept: Kept) -> DictConfig:
    """A new copy of what ``keep`` kept."""
    return pickle.loads(kept) if isinstance(kept, bytes) else copy.deepcopy(kept)


def deep_copy(config: DictConfig) -> DictConfig:
    """A deep copy of ``config`` (2x faster than ``copy.deepcopy`` where it pickles)."""
    kept = keep(config)
    return pickle.loads(kept) if isinstance(kept, bytes) else kept


def task_part(config: DictConfig) -> DictConfig:
    """A copy of ``config`` less its hydra node: what Hydra's ``run_job`` gives the task."""
    task = deep_copy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task
