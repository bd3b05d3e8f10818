"""The user's own tables (CSV and Parquet files): read, with one clear error naming file, line
(or row) and column.

A file is parsed with numeric types first (pandas' C parser, or pyarrow), so the checks are a
few whole-column tests. Only a column that this parse could not read as numbers is looked at
cell by cell, to name its first bad cell exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import DataError, first_line

PARQUET_SUFFIXES = (".parquet", ".pq")


class TableError(DataError):
    """A file of the user's that cannot be used as it is."""


@dataclass(frozen=True)
class Table:
    """Samples as arrays, with the names of their classes and features."""

    features: np.ndarray  # float32, n x d, C-contiguous
    labels: np.ndarray  # int64 class indices into class_names
    class_names: list[str]
    feature_names: list[str]


def read_labelled_csv(
    path: str | Path,
    label: str,
    features: list[str] | None,
    delimiter: str = ",",
    header: bool = True,
) -> Table:
    """A training CSV file (see ``_labelled_table``)."""
    return _labelled_table(_read_csv(path, delimiter, header, text_column=label), label, features)


def read_labelled_parquet(path: str | Path, label: str, features: list[str] | None) -> Table:
    """A training Parquet file (see ``_labelled_table``); only the columns used are read."""
    import pyarrow

    wanted = [label, *features] if features else None
    table = _labelled_table(_read_parquet(path, wanted), label, features)
    # Arrow's allocator (mimalloc) keeps the pages it freed: 380 MiB for a 1M x 20 file.
    pyarrow.default_memory_pool().release_unused()
    return table


def read_feature_csv(
    path: str | Path, feature_names: list[str], delimiter: str = ",", header: bool = True
) -> pd.DataFrame:
    """Rows to predict from a CSV file (see ``_feature_table``)."""
    return _feature_table(_read_csv(path, delimiter, header), feature_names)


def read_feature_parquet(path: str | Path, feature_names: list[str]) -> pd.DataFrame:
    """Rows to predict from a Parquet file (see ``_feature_table``)."""
    return _feature_table(_read_parquet(path), feature_names)


def read_features(
    path: str | Path, feature_names: list[str], delimiter: str = ",", header: bool = True
) -> pd.DataFrame:
    """Rows to predict from a Parquet file (by its suffix: .parquet, .pq) or a CSV file."""
    if Path(path).suffix.lower() in PARQUET_SUFFIXES:
        return read_feature_parquet(path, feature_names)
    return read_feature_csv(path, feature_names, delimiter, header)


@dataclass
class _Parsed:
    """A parsed file, and what its errors say: "CSV error: in.csv line 7, ..."."""

    frame: pd.DataFrame
    path: Path
    kind: str  # "CSV" or "Parquet"
    unit: str  # "line" or "row"
    first: int  # the number of the first data row in that unit
    columns: list[str]  # the file's columns (``frame`` may hold only those asked for)
    read_text: Callable[[], pd.DataFrame]  # the file's cells as text, for naming a bad one

    def at(self, row: int) -> str:
        """Where the 0-based data row ``row`` is: ``line 7`` (CSV) or ``row 6`` (Parquet)."""
        return f"{self.unit} {self.first + row}"

    @cached_property
    def text(self) -> pd.DataFrame:
        return self.read_text()

    def cells(self, column: str) -> pd.Series:
        """The column's cells as text (a CSV file is read as text on the first call)."""
        return self.text.iloc[:, self.frame.columns.get_loc(column)].astype(str)


def _read_csv(
    path: str | Path, delimiter: str = ",", header: bool = True, text_column: str | None = None
) -> _Parsed:
    """Numbers where the columns hold numbers, ``text_column`` (the label) as text; column
    names "0", "1", ... without a header."""
    path = _existing(path, "CSV")
    options = {"sep": delimiter, "header": 0 if header else None, "skipinitialspace": True}
    key = int(text_column) if not header and str(text_column).isdecimal() else text_column
    as_text = None if key is None else {key: str}  # verbatim ("07" is not "7")
    try:
        frame = _parse_csv(path, options, as_text)
    except pd.errors.EmptyDataError:
        raise TableError(f"CSV error: {path} is empty. Fix: give a file with rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        detail = str(err).strip().splitlines()[-1].removeprefix("Error tokenizing data. C error: ")
        raise TableError(
            f"CSV error: {path}: {detail}. Fix: every row needs the same "
            f"number of fields, separated by {delimiter!r}"
        ) from None
    if frame.empty:
        raise TableError(f"CSV error: {path} has no data rows. Fix: give a file with rows")
    frame.columns = [str(c) for c in frame.columns]
    return _Parsed(
        frame, path, "CSV", "line", 2 if header else 1, list(frame.columns),
        read_text=lambda: pd.read_csv(path, **options, dtype=str),
    )  # fmt: skip


def _parse_csv(path: Path, options: dict[str, Any], dtype: dict | None) -> pd.DataFrame:
    """``pandas.read_csv(path, **options, dtype=dtype)``, numbers parsed as numbers.

    ``skipinitialspace`` costs the parser a quarter of its time, and changes nothing unless a
    field starts with a blank (a number parses the same with or without them). So the file is
    parsed without it first, and again with it only if a column name or a text value starts
    with a blank, or a row splits into more fields (a quoted field after a blank), or the
    delimiter is a blank or more than one character (a regular expression).
    """
    with warnings.catch_warnings():  # a column of mixed types is reported cell by cell
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)
        if len(options["sep"]) == 1 and not options["sep"].isspace():
            try:
                frame = pd.read_csv(path, **options | {"skipinitialspace": False}, dtype=dtype)
            except ValueError:  # the parse below raises it (ParserError, UnicodeDecodeError, ...)
                pass
            else:
                if not _starts_with_blank(frame):
                    return frame
        return pd.read_csv(path, **options, dtype=dtype)


def _starts_with_blank(frame: pd.DataFrame) -> bool:
    """Whether a column name or a text value starts with a space (what skipinitialspace skips),
    or the first column became the index (a first row with one field more than the header)."""
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        return True
    texts = [frame.columns.to_series(), *(frame[c] for c in frame if frame[c].dtype.kind == "O")]
    return any(text.astype(str).str.startswith(" ").any() for text in texts)


def _read_parquet(path: str | Path, wanted: list[str] | None = None) -> _Parsed:
    """The ``wanted`` columns that the file has (all without ``wanted``)."""
    import pyarrow.parquet as pq

    path = _existing(path, "Parquet")
    if path.stat().st_size == 0:
        raise TableError(f"Parquet error: {path} is empty. Fix: give a file with rows")
    try:
        with pq.ParquetFile(path) as file:
            index = (file.schema_arrow.pandas_metadata or {}).get("index_columns", [])
            columns = [c for c in file.schema_arrow.names if c not in index]  # not pandas' index
            chosen = [c for c in dict.fromkeys(wanted or columns) if c in columns]
            rows, table = file.metadata.num_rows, file.read(columns=chosen)
        # One block per column: the numbers stay where Arrow read them (no second copy, as
        # pandas.read_parquet makes), and Arrow's other buffers are freed as they are taken.
        frame = table.to_pandas(split_blocks=True, self_destruct=True)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise TableError(
            f"Parquet error: {path} is not a Parquet file ({first_line(err).rstrip('.')}). "
            "Fix: give a Parquet file (data=csv reads a CSV file)"
        ) from None
    if rows == 0:
        raise TableError(f"Parquet error: {path} has no data rows. Fix: give a file with rows")
    return _Parsed(frame, path, "Parquet", "row", 1, columns, read_text=lambda: frame)


def _labelled_table(parsed: _Parsed, label: str, features: list[str] | None) -> Table:
    """A training table: numeric feature columns and a label column (any values, e.g. strings)."""
    _require_columns(parsed, [label], "data.label")
    feature_names = list(features) if features else [c for c in parsed.columns if c != label]
    _require_columns(parsed, feature_names, "data.features")
    if not feature_names:
        raise TableError(
            f"{parsed.kind} error: {parsed.path} has no feature columns besides {label!r}. "
            "Fix: add feature columns"
        )
    x = _numeric_features(parsed, feature_names)
    y, class_names = _classes(parsed, label)
    return Table(x, y, class_names, feature_names)


def _feature_table(parsed: _Parsed, feature_names: list[str]) -> pd.DataFrame:
    """Rows to predict: the model's feature columns by name, or all columns by position."""
    if not set(feature_names) <= set(parsed.columns):
        if len(parsed.columns) != len(feature_names):
            raise TableError(
                f"{parsed.kind} error: {parsed.path} has {len(parsed.columns)} columns, the model "
                f"expects {len(feature_names)} features ({', '.join(feature_names)}). Fix: give "
                "those columns by name, or exactly that many columns in training order"
            )
        parsed.frame.columns = parsed.columns = feature_names
    return pd.DataFrame(_numeric_features(parsed, feature_names), columns=feature_names)


def _numeric_features(parsed: _Parsed, columns: list[str]) -> np.ndarray:
    """The columns as one float32 n x d array; a missing or non-numeric cell is an error naming
    its line (or row) and column, the first such column first."""
    values = [_numbers(parsed, column) for column in columns]
    features = np.empty((len(parsed.frame), len(columns)), dtype=np.float32)
    step = 1 << 16  # a block of rows at a time: column by column over all rows is 3x slower
    for start in range(0, len(features), step):
        for j, column in enumerate(values):
            features[start : start + step, j] = column[start : start + step]
    return features


def _numbers(parsed: _Parsed, column: str) -> np.ndarray:
    """One column as float64, checked: by its parsed type, else cell by cell."""
    values = parsed.frame[column]
    if values.dtype.kind not in "iuf":  # text somewhere (or booleans, dates, ...)
        return _numbers_in_text(parsed, column)
    numbers = values.to_numpy(dtype=np.float64)
    missing = np.isnan(numbers)
    if missing.any():
        raise _missing_value(parsed, column, int(missing.argmax()))
    return numbers


def _numbers_in_text(parsed: _Parsed, column: str) -> np.ndarray:
    cells = parsed.cells(column)
    missing = cells.isna() | (cells.str.strip() == "")
    if missing.any():
        raise _missing_value(parsed, column, int(np.flatnonzero(missing.to_numpy())[0]))
    numbers = pd.to_numeric(cells, errors="coerce")
    if numbers.isna().any():
        row = int(np.flatnonzero(numbers.isna().to_numpy())[0])
        raise TableError(
            f"{parsed.kind} error: {parsed.path} {parsed.at(row)}, column {column!r}: "
            f"{cells.iloc[row]!r} is not a number. Fix: feature columns must "
            "be numeric (or leave this column out with data.features)"
        )
    return cells.astype(np.float64).to_numpy()


def _missing_value(parsed: _Parsed, column: str, row: int) -> TableError:
    return TableError(
        f"{parsed.kind} error: {parsed.path} {parsed.at(row)}, column {column!r}: missing value. "
        "Fix: fill in or drop incomplete rows"
    )


def _classes(parsed: _Parsed, label: str) -> tuple[np.ndarray, list[str]]:
    """Each row's class index, and the class names: the label values (as stripped text) in
    ``_natural_key`` order. Values are encoded once, then only the distinct ones are named."""
    codes, distinct = pd.factorize(parsed.frame[label])  # code -1: a missing value
    names = [str(value).strip() for value in distinct]
    class_names = sorted(set(names) - {""}, key=_natural_key)
    index = {name: i for i, name in enumerate(class_names)}
    recode = np.array([index.get(name, -1) for name in names] + [-1], dtype=np.int64)
    labels = recode[codes]  # code -1 picks the final -1
    if (labels < 0).any():
        raise TableError(
            f"{parsed.kind} error: {parsed.path} {parsed.at(int(labels.argmin()))}, column "
            f"{label!r}: missing label. Fix: every row needs a label"
        )
    if len(class_names) < 2:
        raise TableError(
            f"{parsed.kind} error: {parsed.path}: column {label!r} has a single class "
            f"({class_names[0]!r}). Fix: a classifier needs at least 2 classes"
        )
    return labels, class_names


def _existing(path: str | Path, kind: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise TableError(
            f"{kind} error: file not found: {path}. Fix: check the path "
            f"(relative paths start from {Path.cwd()})"
        )
    return path


def _require_columns(parsed: _Parsed, columns: list[str], setting: str) -> None:
    for column in columns:
        if column not in parsed.columns:
            raise TableError(
                f"{parsed.kind} error: {parsed.path} has no column {column!r} "
                f"(columns: {', '.join(parsed.columns)}). Fix: set {setting} to "
                "existing columns"
            )


def _natural_key(name: str) -> tuple[int, float, str]:
    """Numbers in numeric order, then strings."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)
