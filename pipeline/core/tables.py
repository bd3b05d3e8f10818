"""The user's own tables (CSV files): read, with one clear error naming file, line, column."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import DataError


class TableError(DataError):
    """A file of the user's that cannot be used as it is."""


@dataclass(frozen=True)
class Table:
    """Samples as arrays, with the names of their classes and features."""

    features: np.ndarray  # float32, n x d
    labels: np.ndarray  # int64 class indices into class_names
    class_names: list[str]
    feature_names: list[str]


def read_table(path: str | Path, delimiter: str = ",", header: bool = True) -> pd.DataFrame:
    """All cells as strings (column names "0", "1", ... without a header)."""
    path = Path(path)
    if not path.is_file():
        raise TableError(
            f"CSV error: file not found: {path}. Fix: check the path "
            f"(relative paths start from {Path.cwd()})"
        )
    try:
        table = pd.read_csv(
            path, sep=delimiter, header=0 if header else None, dtype=str, skipinitialspace=True
        )
    except pd.errors.EmptyDataError:
        raise TableError(f"CSV error: {path} is empty. Fix: give a file with rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        detail = str(err).strip().splitlines()[-1].removeprefix("Error tokenizing data. C error: ")
        raise TableError(
            f"CSV error: {path}: {detail}. Fix: every row needs the same "
            f"number of fields, separated by {delimiter!r}"
        ) from None
    if table.empty:
        raise TableError(f"CSV error: {path} has no data rows. Fix: give a file with rows")
    table.columns = [str(c) for c in table.columns]
    table.attrs["path"], table.attrs["first_line"] = path, 2 if header else 1
    return table


def numeric_features(table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The columns as float32; a missing or non-numeric cell is an error naming line and column."""
    path, first_line = table.attrs["path"], table.attrs["first_line"]
    for column in columns:
        cells = table[column]
        missing = cells.isna() | (cells.str.strip() == "")
        if missing.any():
            line = first_line + int(np.flatnonzero(missing.to_numpy())[0])
            raise TableError(
                f"CSV error: {path} line {line}, column {column!r}: missing value. "
                "Fix: fill in or drop incomplete rows"
            )
        numbers = pd.to_numeric(cells, errors="coerce")
        if numbers.isna().any():
            row = int(np.flatnonzero(numbers.isna().to_numpy())[0])
            raise TableError(
                f"CSV error: {path} line {first_line + row}, column {column!r}: "
                f"{cells.iloc[row]!r} is not a number. Fix: feature columns must "
                "be numeric (or leave this column out with data.features)"
            )
    return table[columns].astype(np.float64).to_numpy(dtype=np.float32)


def read_labelled_csv(
    path: str | Path,
    label: str,
    features: list[str] | None,
    delimiter: str = ",",
    header: bool = True,
) -> Table:
    """A training file: numeric feature columns and a label column (any values, e.g. strings)."""
    table = read_table(path, delimiter, header)
    path = table.attrs["path"]
    _require_columns(table, [label], "data.label")
    feature_names = list(features) if features else [c for c in table.columns if c != label]
    _require_columns(table, feature_names, "data.features")
    if not feature_names:
        raise TableError(
            f"CSV error: {path} has no feature columns besides {label!r}. Fix: add feature columns"
        )
    x = numeric_features(table, feature_names)
    labels = table[label].str.strip()
    if labels.isna().any() or (labels == "").any():
        line = table.attrs["first_line"] + int(
            np.flatnonzero((labels.isna() | (labels == "")).to_numpy())[0]
        )
        raise TableError(
            f"CSV error: {path} line {line}, column {label!r}: missing label. "
            "Fix: every row needs a label"
        )
    class_names = sorted(labels.unique(), key=_natural_key)
    if len(class_names) < 2:
        raise TableError(
            f"CSV error: {path}: column {label!r} has a single class "
            f"({class_names[0]!r}). Fix: a classifier needs at least 2 classes"
        )
    index = {name: i for i, name in enumerate(class_names)}
    y = labels.map(index).to_numpy(dtype=np.int64)
    return Table(x, y, class_names, feature_names)


def read_feature_csv(
    path: str | Path, feature_names: list[str], delimiter: str = ",", header: bool = True
) -> pd.DataFrame:
    """Rows to predict: the model's feature columns by name, or all columns by position."""
    table = read_table(path, delimiter, header)
    if not set(feature_names) <= set(table.columns):
        if len(table.columns) != len(feature_names):
            raise TableError(
                f"CSV error: {table.attrs['path']} has {len(table.columns)} columns, the model "
                f"expects {len(feature_names)} features ({', '.join(feature_names)}). Fix: give "
                "those columns by name, or exactly that many columns in training order"
            )
        table.columns = feature_names
    features = numeric_features(table, feature_names)
    return pd.DataFrame(features, columns=feature_names)


def _require_columns(table: pd.DataFrame, columns: list[str], setting: str) -> None:
    for column in columns:
        if column not in table.columns:
            raise TableError(
                f"CSV error: {table.attrs['path']} has no column {column!r} "
                f"(columns: {', '.join(table.columns)}). Fix: set {setting} to "
                "existing columns"
            )


def _natural_key(name: str) -> tuple[int, float, str]:
    """Numbers in numeric order, then strings."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)
