"""The users' own data: CSV and Parquet tables (pyarrow), NumPy `.npz`, safetensors, folders of
images with one subfolder per label (Pillow), and scikit-learn's shipped examples, read into the
one dataset format (features float32, labels as class indices) under a task's `DataSchema`.

A file is read as given (`read_table`: its columns and raw label values); `profile` proposes the
schema an owner edits; `to_dataset` selects the schema's feature columns and maps label values
to class indices. fedmarket's own safetensors (`features`, `labels`) already holds indices.
Every malformed file is one `DataFormatError` line naming the file and what is wrong."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedmarket.errors import DataFormatError, DataValidationError
from fedmarket.ml.data import Dataset, decode_dataset
from fedmarket_schemas.market import DataSchema

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm")


@dataclass(frozen=True)
class Table:
    """A file as read: its feature columns by name, and its label column's raw values."""

    features: np.ndarray  # float32 (n, f); NaN where a cell is empty
    labels: np.ndarray  # as in the file: integers or strings
    feature_names: tuple[str, ...]
    label_column: str
    indexed: bool = False  # fedmarket's own format: labels are class indices, columns by position
    source: str = ""


def _shipped(name: str) -> Table:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    names = tuple(f"x{i}" for i in range(bunch.data.shape[1])) if name == "digits" else tuple(bunch.feature_names)
    return Table(bunch.data.astype(np.float32), bunch.target.astype(np.int64), names, "label")


SHIPPED = ("digits", "breast_cancer", "wine")  # scikit-learn's load_<name>, no download


def read_table(
    source: str | Path, label_column: str = "label", feature_columns: tuple[str, ...] | None = None
) -> Table:
    """`source`: a file (.csv, .parquet, .npz, .safetensors), a folder of images (one subfolder
    per label) or a shipped example (digits, breast_cancer, wine). `feature_columns`: those to
    read, in that order (default: every column but the label)."""
    path = Path(source)
    if str(source) in SHIPPED:
        table = _shipped(str(source))
    elif not path.exists():
        raise DataFormatError(f"{path}: no such file or folder (or shipped example: {', '.join(SHIPPED)})")
    elif path.is_dir():
        table = _read_images(path)
    elif path.suffix == ".csv":
        table = _read_arrow(path, label_column, "csv")
    elif path.suffix in (".parquet", ".pq"):
        table = _read_arrow(path, label_column, "parquet")
    elif path.suffix == ".npz":
        table = _read_npz(path, label_column)
    elif path.suffix == ".safetensors":
        try:
            data = decode_dataset(path.read_bytes())
        except DataValidationError as exc:
            raise DataFormatError(f"{path}: {exc}") from None
        names = tuple(f"x{i}" for i in range(data.features.shape[1]))
        table = Table(data.features, data.labels, names, "label", indexed=True)
    else:
        raise DataFormatError(f"{path}: unknown format {path.suffix!r} (.csv, .parquet, .npz, .safetensors, a folder)")
    return _select(dataclasses.replace(table, source=str(source)), feature_columns)


def _select(table: Table, columns: tuple[str, ...] | None) -> Table:
    if columns is None or tuple(columns) == table.feature_names or table.indexed:
        return table
    index = {name: i for i, name in enumerate(table.feature_names)}
    missing = [c for c in columns if c not in index]
    if missing:
        raise DataFormatError(f"{table.source}: no feature column {', '.join(map(repr, missing[:5]))}")
    picked = table.features[:, [index[c] for c in columns]]
    return dataclasses.replace(table, features=picked, feature_names=tuple(columns))


def _read_arrow(path: Path, label_column: str, kind: str) -> Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        if kind == "csv":
            from pyarrow import csv

            arrow = csv.read_csv(path)
        else:
            from pyarrow import parquet

            arrow = parquet.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable {kind} table: {str(exc).splitlines()[0]}") from exc
    if label_column not in arrow.column_names:
        raise DataFormatError(
            f"{path}: no label column {label_column!r} (columns: {', '.join(arrow.column_names[:10])})"
        )
    names = tuple(c for c in arrow.column_names if c != label_column)
    if not names:
        raise DataFormatError(f"{path}: no feature column besides the label {label_column!r}")
    columns = []
    for name in names:
        column = arrow.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type)):
            text = pc.cast(column, pa.string())
            bad = [i for i, v in enumerate(text.to_pylist()) if v is not None and not _is_number(v)]
            row = bad[0] if bad else 0
            raise DataFormatError(f"{path}: column {name!r} is not numeric (row {row + 1}: {text[row].as_py()!r})")
        columns.append(column.to_numpy(zero_copy_only=False).astype(np.float64))
    labels = arrow.column(label_column)
    if labels.null_count:
        row = labels.to_pylist().index(None)
        raise DataFormatError(f"{path}: label column {label_column!r} is empty in row {row + 1}")
    values = labels.to_numpy(zero_copy_only=False)
    return Table(np.stack(columns, axis=1).astype(np.float32), _integral(values), names, label_column)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _integral(values: np.ndarray) -> np.ndarray:
    """Labels as integers where every value is integral (CSV readers make 0/1 floats), else strings."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "f" and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        return values.astype(np.int64)
    return values.astype(str)


def _read_npz(path: Path, label_column: str) -> Table:
    """`features` (n, f) and `labels` (n) arrays, or one 1-D array per column."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            named = {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a readable .npz: {exc}") from exc
    if "features" in named:
        label_key = "labels" if "labels" in named else label_column
        if label_key not in named:
            raise DataFormatError(f"{path}: has `features` but no `labels` or {label_column!r} array")
        features, labels = named["features"], named[label_key]
        if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
            raise DataFormatError(f"{path}: features {features.shape} and labels {labels.shape} do not match")
        names = tuple(f"x{i}" for i in range(features.shape[1]))
    else:
        if label_column not in named:
            raise DataFormatError(f"{path}: no label column {label_column!r} (arrays: {', '.join(list(named)[:10])})")
        names = tuple(k for k in named if k != label_column)
        lengths = {k: named[k].shape for k in (*names, label_column)}
        if any(len(shape) != 1 for shape in lengths.values()) or len({s[0] for s in lengths.values()}) != 1:
            raise DataFormatError(f"{path}: columns of different shapes {lengths}")
        features, labels = np.stack([named[k] for k in names], axis=1), named[label_column]
    if features.dtype.kind not in "iuf":
        raise DataFormatError(f"{path}: features are {features.dtype}, not numbers")
    return Table(features.astype(np.float32), _integral(labels), names, label_column)


def _read_images(folder: Path) -> Table:
    """Grayscale pixels (0..255) of every image under folder/<label>/, all of one size."""
    from PIL import Image, UnidentifiedImageError

    rows, labels, size, first = [], [], None, None
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
    if not subfolders:
        raise DataFormatError(f"{folder}: no subfolder (one per label) of images")
    for sub in subfolders:
        for image_path in sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                with Image.open(image_path) as image:
                    pixels = np.asarray(image.convert("L"), dtype=np.float32)
            except (UnidentifiedImageError, OSError) as exc:
                raise DataFormatError(f"{image_path}: not a readable image: {exc}") from exc
            if size is None:
                size, first = pixels.shape, image_path
            elif pixels.shape != size:
                raise DataFormatError(
                    f"{image_path}: image is {pixels.shape[1]}x{pixels.shape[0]}, {first} is {size[1]}x{size[0]}"
                )
            rows.append(pixels.ravel())
            labels.append(sub.name)
    if not rows:
        raise DataFormatError(f"{folder}: no image in its subfolders ({', '.join(IMAGE_SUFFIXES)})")
    names = tuple(f"p{r}_{c}" for r in range(size[0]) for c in range(size[1]))
    return Table(np.stack(rows), _integral(np.asarray(labels)), names, "label")


def profile(table: Table, *, min_rows: int = 10) -> DataSchema:
    """The schema an owner's file suggests: its columns, each one's observed range, its labels
    (class indices, with the file's values where they are not already 0..C-1), min_rows."""
    features = table.features.astype(np.float64)
    if not np.isfinite(features).all():
        raise DataValidationError("the file has empty or non-finite feature cells; fill or drop them before profiling")
    low, high = features.min(axis=0), features.max(axis=0)
    high = np.where(high > low, high, low + 1.0)  # a constant column still needs a range
    values = np.unique(table.labels)
    indexed = table.indexed or (values.dtype.kind in "iu" and np.array_equal(values, np.arange(len(values))))
    return DataSchema(
        feature_count=features.shape[1],
        feature_min=_bound(low),
        feature_max=_bound(high),
        labels=tuple(range(int(values.max()) + 1 if indexed else len(values))),
        min_rows=min_rows,
        feature_names=table.feature_names,
        label_column=table.label_column,
        label_names=None if indexed else tuple(str(v) for v in values),
    )


def _bound(values: np.ndarray) -> float | tuple[float, ...]:
    values = [float(v) for v in values]
    return values[0] if len(set(values)) == 1 else tuple(values)


def to_dataset(table: Table, schema: DataSchema) -> Dataset:
    """The schema's feature columns in its order, labels as class indices (the file's values
    mapped through `label_names`)."""
    table = _select(table, schema.feature_names)
    if table.features.shape[1] != schema.feature_count:
        raise DataValidationError(
            f"{table.source}: {table.features.shape[1]} features, the task's schema has {schema.feature_count}"
        )
    if table.indexed or schema.label_names is None:
        if table.labels.dtype.kind not in "iu":
            raise DataValidationError(
                f"label column {schema.label_column!r} holds {table.labels.tolist()[0]!r}: the task's labels are class "
                "indices (give label_names in the schema to map the file's values)"
            )
        return Dataset(table.features, table.labels.astype(np.int64))
    index = {name: i for i, name in enumerate(schema.label_names)}
    raw = [str(v) for v in table.labels.tolist()]
    unknown = sorted(set(raw) - set(index))
    if unknown:
        raise DataValidationError(
            f"label column {schema.label_column!r} holds {', '.join(map(repr, unknown[:5]))}, not among the "
            f"task's labels {list(schema.label_names)}"
        )
    return Dataset(table.features, np.array([index[v] for v in raw], dtype=np.int64))


def load_dataset(source: str | Path, schema: DataSchema) -> Dataset:
    """A party's file read under the task's schema (its label column and feature columns)."""
    return to_dataset(read_table(source, schema.label_column), schema)
