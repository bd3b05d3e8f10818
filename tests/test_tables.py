"""The user's tables, CSV and Parquet alike: Parquet's one-line errors, the same table from
either format, and a large file's fast path and exact errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import compose_config
from pipeline.config.build import build
from pipeline.core.data import Dataset
from pipeline.core.tables import TableError, read_labelled_csv, read_labelled_parquet


def load(*overrides: str) -> Dataset:
    return build("data", compose_config(list(overrides)).data)


@pytest.mark.parametrize(("columns", "message"), [
    (None, "Parquet error: file not found: {path}"),
    (b"", "Parquet error: {path} is empty"),
    (b"a,b,label\n1,2,x\n", "Parquet error: {path} is not a Parquet file (Parquet magic bytes"),
    ({"a": [], "b": [], "label": []}, "Parquet error: {path} has no data rows"),
    ({"a": [1, 3], "b": ["2", "oops"], "label": ["x", "y"]},
     "Parquet error: {path} row 2, column 'b': 'oops' is not a number"),
    ({"a": [1, 3], "b": [True, False], "label": ["x", "y"]},
     "Parquet error: {path} row 1, column 'b': 'True' is not a number"),
    ({"a": [1, 3], "b": [2.0, None], "label": ["x", "y"]},
     "Parquet error: {path} row 2, column 'b': missing value"),
    ({"a": [1, 3], "b": [2, 4], "kind": ["x", "y"]},
     "Parquet error: {path} has no column 'label' (columns: a, b, kind)"),
    ({"a": [1, 3], "b": [2, 4], "label": ["x", "x"]},
     "Parquet error: {path}: column 'label' has a single class ('x')"),
    ({"a": [1, 3], "b": [2, 4], "label": ["x", None]},
     "Parquet error: {path} row 2, column 'label': missing label"),
])  # fmt: skip
def test_bad_parquet_files_name_the_file_row_and_column(tmp_path, columns, message):
    path = tmp_path / "bad.parquet"
    if isinstance(columns, bytes):
        path.write_bytes(columns)
    elif columns is not None:
        pd.DataFrame(columns).to_parquet(path, index=False)
    with pytest.raises(TableError) as raised:
        read_labelled_parquet(path, "label", None)
    assert message.format(path=path) in str(raised.value)
    assert "Fix:" in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(("text", "classes"), [
    ("a, b, label\n1, 2, x\n 3,4,y\n", ["x", "y"]),  # blanks after delimiters are skipped
    ('a,b,label\n1,2, "x,y"\n3,4,z\n', ["x,y", "z"]),  # a quoted field after a blank
    ('a,b,label\n1, "2",x\n3,4,y\n', ["x", "y"]),  # a quoted number after a blank
    ("a,b,label\n1,2,07\n3,4,7\n", ["07", "7"]),  # labels are text, as written
])  # fmt: skip
def test_blanks_quotes_and_labels_read_as_written(tmp_path, text, classes):
    """The fast parse skips no blanks; where a blank could matter, the file is parsed again
    skipping them, as it always was."""
    (tmp_path / "t.csv").write_text(text)
    table = read_labelled_csv(tmp_path / "t.csv", "label", None)
    assert table.class_names == classes
    assert table.feature_names == ["a", "b"]
    assert table.features.tolist() == [[1, 2], [3, 4]]


def test_csv_and_parquet_of_the_same_table_load_the_same(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "size": rng.normal(5, 2, 300),
        "count": rng.integers(0, 50, 300),
        "weight": rng.normal(0, 1, 300).astype(np.float32),
        "kind": rng.choice(["cat", "dog", "10", "9"], 300),
    })  # fmt: skip
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    from_csv = read_labelled_csv(tmp_path / "t.csv", "kind", None)
    from_parquet = read_labelled_parquet(tmp_path / "t.parquet", "kind", None)
    assert from_csv.features.tobytes() == from_parquet.features.tobytes()
    assert from_csv.features.dtype == np.float32
    assert from_csv.labels.tolist() == from_parquet.labels.tolist()
    assert from_csv.class_names == from_parquet.class_names == ["9", "10", "cat", "dog"]
    assert from_csv.feature_names == from_parquet.feature_names == ["size", "count", "weight"]
    choose = ["data.label=kind", "data.features=[weight,size]"]
    csv = load("data=csv", f"data.path={tmp_path / 't.csv'}", *choose)
    parquet = load("data=parquet", f"data.path={tmp_path / 't.parquet'}", *choose)
    assert parquet.feature_names == ["weight", "size"]
    assert [len(parquet.train), len(parquet.val), len(parquet.test)] == [180, 60, 60]
    assert csv.digest() == parquet.digest()


@pytest.mark.filterwarnings("error")
def test_a_large_file_is_read_fast_and_a_bad_cell_in_it_named_exactly(tmp_path):
    """Enough rows that pandas parses the CSV file in several chunks: a bad cell deep in a late
    chunk still gets its exact line, and no warning about mixed types comes first."""
    rows, rng = 60_000, np.random.default_rng(1)
    x = rng.normal(size=(rows, 8)).round(5)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    frame["label"] = rng.choice(["a", "b", "c"], rows)
    frame.to_csv(tmp_path / "big.csv", index=False)
    frame.to_parquet(tmp_path / "big.parquet")
    for table in (read_labelled_csv(tmp_path / "big.csv", "label", None),
                  read_labelled_parquet(tmp_path / "big.parquet", "label", None)):  # fmt: skip
        assert np.array_equal(table.features, x.astype(np.float32))
        assert table.features.flags.c_contiguous
    lines = (tmp_path / "big.csv").read_text().splitlines()

    def edit(text: list[str], line: int, column: int, value: str) -> list[str]:
        cells = text[line - 1].split(",")
        cells[column] = value
        return [*text[: line - 1], ",".join(cells), *text[line:]]

    cases = {
        "oops": (edit(lines, 55_003, 1, "oops"), "line 55003, column 'x1': 'oops' is not a number"),
        "holes": (edit(lines, 40_001, 7, " "), "line 40001, column 'x7': missing value"),
        "ragged": (edit(lines, 50_001, 8, "a,9"), "Expected 9 fields in line 50001, saw 10"),
        "first column first": (edit(edit(lines, 59_000, 1, ""), 100, 5, "oops"),
                               "line 59000, column 'x1': missing value"),
    }  # fmt: skip
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join(text) + "\n")
        with pytest.raises(TableError) as raised:
            read_labelled_csv(path, "label", None)
        assert f"CSV error: {path}" in str(raised.value)
        assert message in str(raised.value), name
    frame.loc[50_000, "x3"] = np.nan
    frame["x5"] = frame["x5"].astype(str)
    frame.loc[30_000, "x5"] = "oops"
    frame.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(TableError, match="row 50001, column 'x3': missing value"):
        read_labelled_parquet(tmp_path / "bad.parquet", "label", None)
    with pytest.raises(TableError, match="row 30001, column 'x5': 'oops' is not a number"):
        read_labelled_parquet(tmp_path / "bad.parquet", "label", ["x5", "x3"])
