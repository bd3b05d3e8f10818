"""Datasets as in-memory tensors: loading, stratified splits, standardization statistics."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from omegaconf import DictConfig

from pipeline.config import ConfigError, PipelineError
from pipeline.csvfile import read_labelled_csv

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


class DataError(PipelineError):
    """Data that cannot be trained on (too few samples per class for the split, ...)."""


@dataclass(frozen=True)
class Split:
    """Features (float32, n x d) and integer labels (n)."""

    features: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> Split:
        return Split(self.features.to(device), self.labels.to(device))


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits, with the names of the classes and features."""

    train: Split
    val: Split | None
    test: Split | None
    class_names: list[str]
    feature_names: list[str]

    @property
    def n_features(self) -> int:
        return self.train.features.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def digest(self) -> str:
        """SHA-256 of every split's tensors, to tell whether two runs saw the same data."""
        sha = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            if split is not None:
                sha.update(split.features.numpy().tobytes())
                sha.update(split.labels.numpy().tobytes())
        return sha.hexdigest()

    def to(self, device: torch.device) -> Dataset:
        return self._map(lambda split: split.to(device))

    @torch.no_grad()
    def standardized(self, scaler: torch.nn.Module) -> Dataset:
        """Every split's features through ``scaler`` (once, instead of at every forward pass)."""
        return self._map(lambda split: Split(scaler(split.features), split.labels))

    def _map(self, fn: Callable[[Split], Split]) -> Dataset:
        maybe = lambda split: fn(split) if split is not None else None  # noqa: E731
        return replace(self, train=fn(self.train), val=maybe(self.val), test=maybe(self.test))


def toy(cfg: DictConfig) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    features = np.array(TOY_FEATURES, dtype=np.float32)
    return features, np.array(TOY_LABELS), ["0", "1", "2"], [f"x{i}" for i in range(4)]


def builtin(cfg: DictConfig) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """scikit-learn's bundled iris, wine and digits sets."""
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{cfg.name}")()
    names = [str(name) for name in bunch.target_names]
    return bunch.data.astype(np.float32), bunch.target, names, list(bunch.feature_names)


def synthetic(cfg: DictConfig) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Gaussian blobs: features = centre of the sample's class + standard normal noise."""
    generator = torch.Generator().manual_seed(cfg.seed)
    centres = torch.randn(cfg.n_classes, cfg.n_features, generator=generator) * cfg.separation
    labels = torch.randint(cfg.n_classes, (cfg.n_samples,), generator=generator)
    features = centres[labels] + torch.randn(cfg.n_samples, cfg.n_features, generator=generator)
    names = [str(c) for c in range(cfg.n_classes)]
    return features.numpy(), labels.numpy(), names, [f"x{i}" for i in range(cfg.n_features)]


def csv(cfg: DictConfig) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    table = read_labelled_csv(cfg.path, cfg.label, cfg.features, cfg.delimiter, cfg.header)
    return table.features, table.labels, table.class_names, table.feature_names


LOADERS = {
    "toy": toy,
    "iris": builtin,
    "wine": builtin,
    "digits": builtin,
    "csv": csv,
    "synthetic": synthetic,
}


def load_dataset(cfg: DictConfig) -> Dataset:
    """Load the dataset that ``cfg`` (the ``data`` group) names, split as it says."""
    if cfg.name not in LOADERS:
        raise ConfigError(
            f"Config error: unknown data.name {cfg.name!r}. Fix: use one of {sorted(LOADERS)}"
        )
    features, labels, class_names, feature_names = LOADERS[cfg.name](cfg)
    train, val, test = split_indices(labels, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    take = lambda idx: Split(torch.from_numpy(features[idx]), torch.from_numpy(labels[idx]))  # noqa: E731
    return Dataset(
        train=take(train),
        val=take(val) if len(val) else None,
        test=take(test) if len(test) else None,
        class_names=class_names,
        feature_names=feature_names,
    )


def split_indices(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded train/val/test indices; with no held-out fractions, all rows in order."""
    everything = np.arange(len(labels))
    if val_fraction == 0 and test_fraction == 0:
        return everything, everything[:0], everything[:0]
    from sklearn.model_selection import train_test_split

    held_out = val_fraction + test_fraction
    try:
        train, rest = train_test_split(
            everything, test_size=held_out, stratify=labels, random_state=seed
        )
        if val_fraction == 0 or test_fraction == 0:
            empty = rest[:0]
            return (train, rest, empty) if test_fraction == 0 else (train, empty, rest)
        val, test = train_test_split(
            rest, test_size=test_fraction / held_out, stratify=labels[rest], random_state=seed
        )
    except ValueError as err:
        raise DataError(
            f"Data error: cannot split {len(labels)} samples into stratified train/val/test "
            f"sets ({err}). Fix: more samples per class, or smaller data.val_fraction / "
            "data.test_fraction"
        ) from None
    return train, val, test


def standardization(train: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std of the training split (std 1 for constant features)."""
    mean = train.features.mean(dim=0)
    std = train.features.std(dim=0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))
