"""The signature every aggregation rule has: (kept models, one float64 row each) -> global model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedmarket.algorithms.registry import Registry
from fedmarket.errors import ConfigError

Aggregator = Callable[[np.ndarray], np.ndarray]
AGGREGATORS: Registry[Aggregator] = Registry("aggregator")


def assumed_byzantine(n: int) -> int:
    """The largest minority, floor((n - 1) / 2): the market assumes an honest majority
    (sources/004, Algorithm 1) but does not know how many trainers attack."""
    return max(0, (n - 1) // 2)


def as_models(models: np.ndarray) -> np.ndarray:
    models = np.asarray(models, dtype=np.float64)
    if models.ndim != 2 or models.shape[0] == 0:
        raise ConfigError(f"nothing to aggregate: expected a non-empty (trainers, params) matrix, got {models.shape}")
    return models
