"""Datasets as in-memory tensors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from pipeline.config import ConfigError

# The tutorial's toy set (../shared/reference/seed_softmax.py).
TOY_FEATURES = [
    [1, 2, 1, 1],
    [2, 1, 3, 2],
    [3, 1, 3, 4],
    [4, 1, 5, 5],
    [1, 7, 5, 5],
    [1, 2, 5, 6],
    [1, 6, 6, 6],
    [1, 7, 7, 7],
]
TOY_LABELS = [2, 2, 2, 1, 1, 1, 0, 0]


@dataclass(frozen=True)
class Dataset:
    """Features (float32, n x d), integer labels (n) and the name of each class."""

    features: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def digest(self) -> str:
        """SHA-256 of the features and labels, to tell whether two runs saw the same data."""
        sha = hashlib.sha256(self.features.numpy().tobytes())
        sha.update(self.labels.numpy().tobytes())
        return sha.hexdigest()


def toy() -> Dataset:
    return Dataset(
        features=torch.tensor(TOY_FEATURES, dtype=torch.float32),
        labels=torch.tensor(TOY_LABELS, dtype=torch.long),
        class_names=["0", "1", "2"],
    )


LOADERS = {"toy": toy}


def load_dataset(cfg: DictConfig) -> Dataset:
    """Load the dataset that ``cfg.data`` names."""
    if cfg.name not in LOADERS:
        raise ConfigError(
            f"Config error: unknown data.name {cfg.name!r}. Fix: use one of {sorted(LOADERS)}"
        )
    return LOADERS[cfg.name]()
