"""The users' own data: each format read from small files written here, malformed files refused
with one line naming the problem, the proposed schema, labels mapped to class indices, the data
check naming the file's columns, and the `fedmarket data` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from pyarrow import parquet
from safetensors.numpy import save

from fedmarket.datacheck import check_dataset
from fedmarket.errors import DataFormatError, DataValidationError
from fedmarket.ml.data import decode_dataset, scale_inputs
from fedmarket.ml.formats import load_dataset, profile, read_table, to_dataset
from fedmarket_schemas.market import DataSchema, ModelKind, TaskSpec

CSV = "size,shade,kind\n1.5,2,cat\n3,4,dog\n5,6,cat\n"
EXPECTED = np.array([[1.5, 2], [3, 4], [5, 6]], dtype=np.float32)
# the task's schema for CSV's columns, as an owner would edit it
SCHEMA = DataSchema(
    feature_count=2,
    feature_max=(10.0, 5.0),
    labels=(0, 1),
    min_rows=1,
    feature_names=("size", "shade"),
    label_column="kind",
    label_names=("cat", "dog"),
)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_parquet_and_npz_columns_read_alike(tmp_path):
    csv = read_table(write(tmp_path / "t.csv", CSV), "kind")
    parquet.write_table(
        pa.table({"size": [1.5, 3.0, 5.0], "shade": [2, 4, 6], "kind": ["cat", "dog", "cat"]}), tmp_path / "t.parquet"
    )
    pq = read_table(tmp_path / "t.parquet", "kind")
    np.savez(tmp_path / "t.npz", size=[1.5, 3.0, 5.0], shade=[2, 4, 6], kind=np.array(["cat", "dog", "cat"]))
    npz = read_table(tmp_path / "t.npz", "kind")
    for table in (csv, pq, npz):
        assert table.feature_names == ("size", "shade") and table.label_column == "kind"
        np.testing.assert_array_equal(table.features, EXPECTED)
        assert table.labels.tolist() == ["cat", "dog", "cat"]


def test_npz_features_and_labels_and_safetensors_are_read_by_position(tmp_path):
    np.savez(tmp_path / "f.npz", features=EXPECTED, labels=np.array([1, 0, 1]))
    table = read_table(tmp_path / "f.npz")
    assert table.feature_names == ("x0", "x1") and table.labels.tolist() == [1, 0, 1]
    (tmp_path / "d.safetensors").write_bytes(save({"features": EXPECTED, "labels": np.array([2, 0, 1])}))
    data = load_dataset(
        tmp_path / "d.safetensors", DataSchema(feature_count=2, labels=(0, 1, 2), feature_names=("a", "b"))
    )
    np.testing.assert_array_equal(data.features, EXPECTED)
    assert data.labels.tolist() == [2, 0, 1]


def test_integral_float_labels_are_class_indices(tmp_path):
    table = read_table(write(tmp_path / "t.csv", "a,y\n0.5,1.0\n0.25,0.0\n"), "y")
    assert table.labels.dtype == np.int64 and table.labels.tolist() == [1, 0]


def test_a_folder_of_images_reads_one_label_per_subfolder(tmp_path):
    for label, value in (("cat", 10), ("dog", 200)):
        (tmp_path / label).mkdir()
        Image.fromarray(np.full((2, 3), value, dtype=np.uint8)).save(tmp_path / label / "a.png")
    table = read_table(tmp_path)
    assert table.features.shape == (2, 6) and table.feature_names[:2] == ("p0_0", "p0_1")
    np.testing.assert_array_equal(table.features[:, 0], [10, 200])
    assert table.labels.tolist() == ["cat", "dog"]


@pytest.mark.parametrize(
    ("name", "text", "label", "message"),
    [
        ("missing.csv", CSV, "label", "no label column 'label' (columns: size, shade, kind)"),
        ("nonnum.csv", "a,b,y\n1,2,0\n3,x,1\n", "y", "column 'b' is not numeric (row 2: 'x')"),
        ("ragged.csv", "a,b,y\n1,2,0\n3,4,5,6\n", "y", "Expected 3 columns, got 4"),
        ("empty-label.csv", "a,y\n1,0\n2,\n", "y", "label column 'y' is empty in row 2"),
        ("table.xlsx", "", "y", "unknown format '.xlsx'"),
        ("shares.safetensors", "not tensors", "label", "not a fedmarket dataset"),
    ],
)
def test_a_malformed_table_is_one_line_naming_the_problem(tmp_path, name, text, label, message):
    with pytest.raises(DataFormatError) as caught:
        read_table(write(tmp_path / name, text), label)
    assert message in str(caught.value) and name in str(caught.value) and "\n" not in str(caught.value)


def test_an_image_of_another_size_is_named(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "a" / "1.png")
    Image.fromarray(np.zeros((5, 6), dtype=np.uint8)).save(tmp_path / "a" / "2.png")
    with pytest.raises(DataFormatError, match=r"2\.png: image is 6x5, .*1\.png is 8x8"):
        read_table(tmp_path)


def test_profile_proposes_columns_ranges_and_labels(tmp_path):
    csv = write(tmp_path / "t.csv", "size,flat,kind\n1.5,7,cat\n3,7,dog\n5,7,cat\n")
    schema = profile(read_table(csv, "kind"), min_rows=2)
    assert schema == DataSchema(
        feature_count=2,
        feature_min=(1.5, 7.0),
        feature_max=(5.0, 8.0),  # a constant column gets a unit range
        labels=(0, 1),
        min_rows=2,
        feature_names=("size", "flat"),
        label_column="kind",
        label_names=("cat", "dog"),
    )
    data = load_dataset(csv, schema)
    assert data.labels.tolist() == [0, 1, 0]
    task = TaskSpec.for_data(schema, ModelKind.lr)
    assert (task.model.in_features, task.model.classes) == (2, 2)
    np.testing.assert_allclose(scale_inputs(data.features, task.model), [[0, 0], [3 / 7, 0], [1, 0]], atol=1e-6)


def test_labels_already_class_indices_need_no_names(tmp_path):
    schema = profile(read_table(write(tmp_path / "t.csv", "a,y\n1,0\n2,2\n3,1\n"), "y"))
    assert schema.labels == (0, 1, 2) and schema.label_names is None


def test_a_label_the_task_does_not_know_is_named(tmp_path):
    schema = SCHEMA.model_copy(update={"label_names": ("cat", "cow")})
    with pytest.raises(DataValidationError, match="'dog', not among the task's labels"):
        load_dataset(write(tmp_path / "t.csv", CSV), schema)


def test_columns_are_picked_by_name_in_the_schemas_order(tmp_path):
    schema = DataSchema(**{**SCHEMA.model_dump(), "feature_count": 1, "feature_max": 5.0, "feature_names": ("shade",)})
    data = load_dataset(write(tmp_path / "t.csv", CSV), schema)
    np.testing.assert_array_equal(data.features[:, 0], [2, 4, 6])
    wrong = schema.model_copy(update={"feature_names": ("colour",)})
    with pytest.raises(DataFormatError, match="no feature column 'colour'"):
        load_dataset(tmp_path / "t.csv", wrong)


def test_the_data_check_names_the_files_column():
    summary = check_dataset(EXPECTED, np.array([0, 1, 0]), SCHEMA, dataset="trainer-0")
    failed = [(c.expectation, c.column, c.unexpected_count) for c in summary.failures()]
    assert failed == [("expect_column_values_to_be_between", "shade", 1)]


def test_a_task_whose_model_does_not_read_its_data_is_refused():
    schema = DataSchema(feature_count=3, labels=(0, 1))
    task = TaskSpec.for_data(schema)
    with pytest.raises(ValueError, match="the model reads 64 features, the data has 3"):
        TaskSpec(model=task.model.model_copy(update={"in_features": 64}), data_schema=schema)
    with pytest.raises(ValueError, match="scale its inputs from the data schema's feature range"):
        TaskSpec(model=task.model.model_copy(update={"input_max": 1.0}), data_schema=schema)


def fedmarket(*args: str) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).parent / "fedmarket"
    return subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=120)


def test_the_data_commands_profile_and_split_a_file(tmp_path):
    csv = write(
        tmp_path / "t.csv",
        "size,shade,kind\n" + "".join(f"{i},{i % 3},{'cat' if i % 2 else 'dog'}\n" for i in range(40)),
    )
    proposed = fedmarket("data", "profile", str(csv), "--label-column", "kind")
    assert proposed.returncode == 0, proposed.stderr
    schema = DataSchema.model_validate_json(proposed.stdout)
    assert schema.label_names == ("cat", "dog") and schema.feature_max == (39.0, 2.0)
    split = fedmarket(
        "data", "split", str(csv), "--label-column", "kind", "--out", str(tmp_path / "out"), "--trainers", "2"
    )
    assert split.returncode == 0, split.stderr
    files = json.loads(split.stdout)
    assert DataSchema.model_validate_json(Path(files["schema"]).read_text()) == schema
    shares = [decode_dataset(Path(p).read_bytes()) for p in [files["owner"], *files["trainers"]]]
    assert sum(len(s) for s in shares) == 40
    assert sorted(np.concatenate([s.features[:, 0] for s in shares]).tolist()) == list(range(40))
    bad = fedmarket("data", "profile", str(write(tmp_path / "bad.csv", "a,y\n1,0\nx,1\n")), "--label-column", "y")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "DataFormatError: " + str(tmp_path / "bad.csv") + ": column 'a' is not numeric (row 2: 'x')"
    ]


def test_shipped_examples_need_no_download():
    for name, features, classes in (("digits", 64, 10), ("breast_cancer", 30, 2), ("wine", 13, 3)):
        table = read_table(name)
        data = to_dataset(table, profile(table))
        assert data.features.shape[1] == features and set(data.labels.tolist()) == set(range(classes))


def test_a_trainer_reads_its_own_file_under_the_tasks_schema(tmp_path):
    from fedmarket_flows.trainer import load_local_data

    csv = write(tmp_path / "mine.csv", "shade,size,kind\n4,3,dog\n2,1.5,cat\n")  # its own column order
    data = load_local_data(csv, TaskSpec.for_data(SCHEMA))
    np.testing.assert_array_equal(data.features, [[3, 4], [1.5, 2]])
    assert data.labels.tolist() == [1, 0]
