"""Datasets as in-memory tensors: the loaders that ``conf/data/*.yaml`` name as ``_target_``,
stratified splits, standardization statistics and the data digest.

Each loader takes its own options plus the split options every data file has
(``val_fraction``, ``test_fraction``, ``split_seed``, ``standardize``) and returns a ``Dataset``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import torch

from pipeline.config.schema import BuiltinSet
from pipeline.core.model import Standardize
from pipeline.core.tables import Table, read_labelled_csv, read_labelled_parquet
from pipeline.errors import DataError

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
    """Train, validation and test splits, the names of classes and features, and whether the
    features are to be standardized (with the training split's statistics)."""

    train: Split
    val: Split | None
    test: Split | None
    class_names: list[str]
    feature_names: list[str]
    standardize: bool = False

    @property
    def n_features(self) -> int:
        return self.train.features.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def digest(self) -> str:
        """SHA-256 of every split's tensors as loaded, to tell whether two runs saw the same
        data (taken once, and kept: ``standardize_`` changes the tensors)."""
        return self._digest

    @cached_property
    def _digest(self) -> str:
        sha = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            if split is not None:  # hashed where the bytes lie: the splits are contiguous views
                sha.update(np.ascontiguousarray(split.features.numpy()))
                sha.update(np.ascontiguousarray(split.labels.numpy()))
        return sha.hexdigest()

    def to(self, device: torch.device) -> Dataset:
        return self._map(lambda split: split.to(device))

    @torch.no_grad()
    def standardize_(self, scaler: Standardize) -> Dataset:
        """Every split's features standardized in place (once, instead of at every forward pass;
        without a second copy of the data): ``self``."""
        self.digest()  # of the data as loaded
        for split in (self.train, self.val, self.test):
            if split is not None:
                scaler.forward_(split.features)
        return self

    def _map(self, fn: Callable[[Split], Split]) -> Dataset:
        maybe = lambda split: fn(split) if split is not None else None  # noqa: E731
        return replace(self, train=fn(self.train), val=maybe(self.val), test=maybe(self.test))


def toy(**split: Any) -> Dataset:
    """The tutorial's 8 samples, 4 features, 3 classes."""
    features = np.array(TOY_FEATURES, dtype=np.float32)
    table = Table(features, np.array(TOY_LABELS), ["0", "1", "2"], [f"x{i}" for i in range(4)])
    return make_dataset(table, **split)


def builtin(dataset: BuiltinSet | str, **split: Any) -> Dataset:
    """scikit-learn's bundled iris, wine and digits sets (no download)."""
    from sklearn import datasets

    name = BuiltinSet(dataset).value
    bunch = getattr(datasets, f"load_{name}")()
    names = [str(name) for name in bunch.target_names]
    table = Table(bunch.data.astype(np.float32), bunch.target, names, list(bunch.feature_names))
    return make_dataset(table, **split)


def synthetic(
    n_samples: int, n_features: int, n_classes: int, separation: float, seed: int, **split: Any
) -> Dataset:
    """Gaussian blobs: features = centre of the sample's class + standard normal noise."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, n_features, generator=generator) * separation
    labels = torch.randint(n_classes, (n_samples,), generator=generator)
    features = centres[labels] + torch.randn(n_samples, n_features, generator=generator)
    names = [str(c) for c in range(n_classes)]
    table = Table(features.numpy(), labels.numpy(), names, [f"x{i}" for i in range(n_features)])
    return make_dataset(table, **split)


def csv(
    path: str,
    label: str,
    features: list[str] | None,
    delimiter: str,
    header: bool,
    **split: Any,
) -> Dataset:
    """The user's own CSV file: numeric feature columns and a label column."""
    return make_dataset(read_labelled_csv(path, label, features, delimiter, header), **split)


def parquet(path: str, label: str, features: list[str] | None, **split: Any) -> Dataset:
    """The user's own Parquet file: numeric feature columns and a label column."""
    return make_dataset(read_labelled_parquet(path, label, features), **split)


def make_dataset(
    table: Table,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    split_seed: int = 0,
    standardize: bool = False,
) -> Dataset:
    """``table`` split into stratified, seeded train/val/test sets.

    The splits are views of one copy of the features, its rows in train, val, test order (no
    copy at all without held-out splits: then train is every row in order).
    """
    train, val, test = split_indices(table.labels, val_fraction, test_fraction, split_seed)
    features, labels = table.features, table.labels
    if len(val) or len(test):
        order = np.concatenate([train, val, test])
        features, labels = features[order], labels[order]
    x, y = torch.from_numpy(features), torch.from_numpy(labels)
    sizes = [len(train), len(val), len(test)]
    splits = [Split(*pair) for pair in zip(x.split(sizes), y.split(sizes), strict=True)]
    return Dataset(
        train=splits[0],
        val=splits[1] if len(val) else None,
        test=splits[2] if len(test) else None,
        class_names=table.class_names,
        feature_names=table.feature_names,
        standardize=standardize,
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


def training_part(data: Dataset) -> Dataset:
    """``data`` with its validation rows joined to the training rows (train, then val): what
    cross-validation cuts its folds from. The test split is left as it is."""
    if data.val is None:
        return data
    train = Split(*(torch.cat(pair) for pair in zip(
        (data.train.features, data.train.labels), (data.val.features, data.val.labels), strict=True
    )))  # fmt: skip
    return replace(data, train=train, val=None)


def fold_assignment(labels: np.ndarray, folds: int, stratified: bool, seed: int) -> np.ndarray:
    """Each row's fold (0 .. folds-1): scikit-learn's (Stratified)KFold, shuffled with
    ``seed``. The same labels, folds and seed give the same assignment."""
    from sklearn.model_selection import KFold, StratifiedKFold

    check_folds(labels, folds, stratified)
    splitter = (StratifiedKFold if stratified else KFold)(folds, shuffle=True, random_state=seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        assignment[held_out] = fold
    return assignment


def check_folds(labels: np.ndarray, folds: int, stratified: bool) -> None:
    """One line if ``labels`` cannot be cut into ``folds`` folds (stratified: each class in each
    fold)."""
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min())
    most = smallest if stratified else len(labels)
    if folds <= most:
        return
    kind, what = "folds", f"there are {len(labels)}"
    fix = f"cv.folds={most} or fewer" if most >= 2 else "more samples"
    if stratified:
        kind, what = "stratified folds", f"its smallest class has {smallest}"
        fix = f"{fix}, or cv.stratified=false" if most >= 2 else "cv.stratified=false"
    raise DataError(
        f"Data error: cannot cut {len(labels)} training samples into {folds} {kind}: {what} "
        f"samples. Fix: {fix}"
    )


def fold_dataset(part: Dataset, assignment: np.ndarray, fold: int) -> Dataset:
    """Fold ``fold`` of ``part`` (a ``training_part``): its rows held out as the validation
    split, the other folds' rows (in order) as the training split; the test split as it is (a
    copy of its features: ``standardize_`` scales each fold's own)."""
    held = torch.from_numpy(assignment == fold)
    train, val = (
        Split(part.train.features[rows], part.train.labels[rows]) for rows in (~held, held)
    )
    test = None if part.test is None else Split(part.test.features.clone(), part.test.labels)
    return replace(part, train=train, val=val, test=test)


def standardization(train: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std of the training split (std 1 for constant features)."""
    mean = train.features.mean(dim=0)
    std = train.features.std(dim=0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))
