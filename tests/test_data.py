"""Datasets, splits and CSV files: loading, stratification, and one clear error per bad file."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
import torch

from pipeline.config import compose_config
from pipeline.config.build import build
from pipeline.core.data import Dataset, standardization
from pipeline.core.model import Standardize
from pipeline.core.tables import TableError, read_feature_csv, read_labelled_csv
from pipeline.errors import DataError


def load(choice: str, **values) -> Dataset:
    """The dataset ``data=choice`` (plus ``data.key=value`` overrides) builds."""
    overrides = [f"data={choice}", *(f"data.{key}={value}" for key, value in values.items())]
    return build("data", compose_config(overrides).data)


@pytest.mark.parametrize(("name", "shape", "classes"), [
    ("iris", (150, 4), ["setosa", "versicolor", "virginica"]),
    ("wine", (178, 13), ["class_0", "class_1", "class_2"]),
    ("digits", (1797, 64), [str(d) for d in range(10)]),
])  # fmt: skip
def test_builtin_sets_load_offline_with_stratified_seeded_splits(name, shape, classes):
    data = load(name)
    sizes = [len(data.train), len(data.val), len(data.test)]
    assert sum(sizes) == shape[0]
    assert data.n_features == shape[1]
    assert data.class_names == classes
    assert sizes[1] == pytest.approx(0.2 * shape[0], abs=2)
    whole = Counter(torch.cat([data.train.labels, data.val.labels, data.test.labels]).tolist())
    test = Counter(data.test.labels.tolist())
    for label, count in whole.items():  # every class keeps its share in the test split
        assert test[label] == pytest.approx(count * 0.2, abs=1)
    again = load(name)
    assert torch.equal(again.test.labels, data.test.labels)
    assert again.digest() == data.digest()
    other = load(name, split_seed=1)
    assert other.digest() != data.digest()


def test_toy_has_no_split_and_keeps_the_reference_order():
    data = load("toy", val_fraction=0.0, test_fraction=0.0)
    assert data.val is None
    assert data.test is None
    assert data.train.labels.tolist() == [2, 2, 2, 1, 1, 1, 0, 0]
    assert data.train.features.dtype == torch.float32


def test_synthetic_is_seeded_and_sized():
    cfg = {"n_samples": 1000, "n_features": 8, "n_classes": 4, "separation": 2.0, "seed": 3}
    data = load("synthetic", **cfg)
    assert (data.n_features, data.n_classes) == (8, 4)
    assert len(data.train) + len(data.val) + len(data.test) == 1000
    assert load("synthetic", **cfg).digest() == data.digest()


def test_splits_share_one_copy_standardized_in_place_with_the_training_statistics():
    data, digest = load("iris"), load("iris").digest()
    storage = data.train.features.untyped_storage().data_ptr()
    for split in (data.val, data.test):  # views of the same array: no copy per split
        assert split.features.untyped_storage().data_ptr() == storage
    mean, std = standardization(data.train)
    assert torch.allclose(mean, data.train.features.mean(0))
    assert not torch.allclose(mean, data.test.features.mean(0))
    assert (std > 0).all()
    scaler = Standardize(mean, std)
    expected = [scaler(split.features) for split in (data.train, data.val, data.test)]
    scaled = data.standardize_(scaler)
    assert scaled.train.features.untyped_storage().data_ptr() == storage
    assert scaled.digest() == digest  # still that of the data as loaded
    for split, values in zip((scaled.train, scaled.val, scaled.test), expected, strict=True):
        assert torch.equal(split.features, values)  # bit for bit what the saved model computes


@pytest.mark.parametrize(("choice", "digest"), [
    ("iris", "222a5f8d576bbe1ab8757119e8f0a32b349b01d968b470b2b5259ccbaae418bb"),
    ("toy", "b03983271113c314e1ccd4d32424721667c53a7201937731248d8744114c8618"),
    ("synthetic", "f0b21fd11a9edbc820a6cd002f5accafd7a50b02a79e5b8842d3e7cc6e89d3a1"),
])  # fmt: skip
def test_the_digest_is_what_earlier_releases_recorded(choice, digest):
    """Reruns compare it with the digest of runs recorded before the splits became views."""
    data = load(choice)
    assert data.digest() == digest
    splits = [s for s in (data.train, data.val, data.test) if s is not None]
    whole = b"".join(t.numpy().tobytes() for s in splits for t in (s.features, s.labels))
    assert hashlib.sha256(whole).hexdigest() == digest


def test_too_few_samples_per_class_to_split():
    with pytest.raises(DataError, match="cannot split 8 samples"):
        load("toy", val_fraction=0.2, test_fraction=0.2)


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_string_labels_become_classes_in_a_stable_order(tmp_path):
    path = write(tmp_path, "a,b,kind\n1,2,cat\n3,4,dog\n5,6,cat\n7,8,bird\n")
    table = read_labelled_csv(path, "kind", None)
    assert table.class_names == ["bird", "cat", "dog"]
    assert table.labels.tolist() == [1, 2, 1, 0]
    assert table.feature_names == ["a", "b"]
    assert table.features.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]


def test_numeric_labels_sort_numerically_and_columns_can_be_chosen(tmp_path):
    path = write(tmp_path, "1;2;10;x\n3;4;9;y\n5;6;10;z\n", "semi.csv")
    table = read_labelled_csv(path, "2", ["1"], delimiter=";", header=False)
    assert table.class_names == ["9", "10"]
    assert table.feature_names == ["1"]
    assert table.features.tolist() == [[2], [4], [6]]


@pytest.mark.parametrize(("text", "message"), [
    (None, "CSV error: file not found: {path}"),
    ("", "CSV error: {path} is empty"),
    ("a,b,label\n", "CSV error: {path} has no data rows"),
    ("a,b,label\n1,2,x\n3,oops,y\n", "{path} line 3, column 'b': 'oops' is not a number"),
    ("a,b,label\n1,2,x\n3,,y\n", "CSV error: {path} line 3, column 'b': missing value"),
    ("a,b,label\n1,2,x\n3,4,y,9\n", "CSV error: {path}: Expected 3 fields in line 3, saw 4"),
    ("a,b,kind\n1,2,x\n3,4,y\n", "CSV error: {path} has no column 'label' (columns: a, b, kind)"),
    ("a,b,label\n1,2,x\n3,4,x\n", "CSV error: {path}: column 'label' has a single class ('x')"),
    ("a,b,label\n1,2,x\n3,4,\n", "CSV error: {path} line 3, column 'label': missing label"),
])  # fmt: skip
def test_bad_training_files_name_the_file_line_and_column(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    if text is not None:
        path.write_text(text)
    with pytest.raises(TableError) as raised:
        read_labelled_csv(path, "label", None)
    assert message.format(path=path) in str(raised.value)
    assert "Fix:" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_prediction_input_by_name_by_position_or_a_clear_mismatch(tmp_path):
    by_name = read_feature_csv(write(tmp_path, "b,label,a\n2,x,1\n"), ["a", "b"])
    assert by_name.to_numpy().tolist() == [[1, 2]]
    by_position = read_feature_csv(write(tmp_path, "p,q\n1,2\n"), ["a", "b"])
    assert by_position.columns.tolist() == ["a", "b"]
    with pytest.raises(TableError, match="has 3 columns, the model expects 2 features"):
        read_feature_csv(write(tmp_path, "p,q,r\n1,2,3\n"), ["a", "b"])
