"""Data: scikit-learn's handwritten digits (shipped with scikit-learn, no download), the owner's
held-out share, and IID / Dirichlet non-IID splits of the trainers' share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from fedmarket.errors import DataValidationError
from fedmarket_schemas.market import ModelConfig

DIGITS_FEATURES = 64
DIGITS_CLASSES = 10
DIGITS_MAX = 16.0  # pixel intensities are integers 0..16


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray  # float32, (n, f)
    labels: np.ndarray  # int64, (n,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.features[index], self.labels[index])


def load_digits_dataset() -> Dataset:
    """All 1,797 digits with raw intensities 0..16; models normalise (see `normalise`)."""
    from sklearn.datasets import load_digits  # a heavy import: only the processes that load data pay it

    bunch = load_digits()
    return Dataset(bunch.data.astype(np.float32), bunch.target.astype(np.int64))


def scale_inputs(features: np.ndarray, model: ModelConfig) -> np.ndarray:
    """Each feature scaled from the task's range [input_min, input_max] to [0, 1] (min-max scaling
    fixed by the task, so every party scales alike; digits: intensity / 16)."""
    low = np.asarray(model.input_min, dtype=np.float64)
    high = np.asarray(model.input_max, dtype=np.float64)
    return ((np.asarray(features, dtype=np.float64) - low) / (high - low)).astype(np.float32)


def owner_split(data: Dataset, *, owner_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Stratified split into (trainers' pool, owner's held-out data)."""
    rng = np.random.default_rng(seed)
    owner_idx: list[int] = []
    for label in np.unique(data.labels):
        idx = rng.permutation(np.flatnonzero(data.labels == label))
        owner_idx.extend(idx[: int(round(len(idx) * owner_fraction))])
    owner_mask = np.zeros(len(data), dtype=bool)
    owner_mask[owner_idx] = True
    return data.subset(np.flatnonzero(~owner_mask)), data.subset(np.flatnonzero(owner_mask))


def validation_test_split(data: Dataset, *, validation_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split the owner's data into validation and test sets by a seed the owner does not choose
    (sources/004, Remark 2: the seed comes from the trainers)."""
    perm = np.random.default_rng(seed).permutation(len(data))
    cut = int(round(len(data) * validation_fraction))
    return data.subset(np.sort(perm[:cut])), data.subset(np.sort(perm[cut:]))


def split_iid(data: Dataset, parts: int, *, seed: int) -> list[Dataset]:
    perm = np.random.default_rng(seed).permutation(len(data))
    return [data.subset(np.sort(chunk)) for chunk in np.array_split(perm, parts)]


def split_dirichlet(data: Dataset, parts: int, *, alpha: float, seed: int, min_size: int = 10) -> list[Dataset]:
    """Label-skewed split: each class is divided among trainers in proportions drawn from
    Dirichlet(alpha). Redrawn until every trainer holds at least `min_size` samples."""
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        buckets: list[list[int]] = [[] for _ in range(parts)]
        for label in np.unique(data.labels):
            idx = rng.permutation(np.flatnonzero(data.labels == label))
            cuts = (np.cumsum(rng.dirichlet(np.full(parts, alpha))) * len(idx)).astype(int)[:-1]
            for bucket, chunk in zip(buckets, np.split(idx, cuts)):
                bucket.extend(chunk.tolist())
        if min(len(b) for b in buckets) >= min_size:
            return [data.subset(np.sort(np.array(b, dtype=np.int64))) for b in buckets]
    raise ValueError(f"no Dirichlet({alpha}) split gives every one of {parts} trainers {min_size} samples")


def split_trainers(data: Dataset, parts: int, *, split: str, alpha: float, seed: int) -> list[Dataset]:
    """The trainers' shares: "iid" or "dirichlet" (label skew with concentration `alpha`)."""
    if split == "iid":
        return split_iid(data, parts, seed=seed)
    return split_dirichlet(data, parts, alpha=alpha, seed=seed)


def encode_dataset(data: Dataset) -> bytes:
    """A dataset as stored by CID: safetensors with `features` (float32) and `labels` (int64)."""
    return save({"features": np.ascontiguousarray(data.features), "labels": np.ascontiguousarray(data.labels)})


def decode_dataset(raw: bytes) -> Dataset:
    try:
        tensors = load(raw)
        features, labels = tensors["features"], tensors["labels"]
    except (SafetensorError, KeyError, ValueError) as exc:
        raise DataValidationError(f"not a fedmarket dataset: {exc}") from exc
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise DataValidationError(f"dataset shapes {features.shape} and {labels.shape} do not match")
    return Dataset(features.astype(np.float32), labels.astype(np.int64))
