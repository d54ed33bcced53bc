"""Coordinate-wise median (Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates", ICML 2018). With an even number of models the median is the mean of the two
middle values, as numpy and the peers (byzfl, flwr) define it.

Breakdown point: fewer than n/2 arbitrary models cannot move any coordinate outside the range of
the honest values of that coordinate (tests/test_aggregators.py checks this property).

Implementation: fedmarket/algorithms/linalg.sorted_columns_reduce (cache-sized column blocks transposed into
contiguous rows, sorted by numpy's vectorised sort, two threads).
"""

from __future__ import annotations

import numpy as np

from fedmarket.algorithms.aggregators.base import AGGREGATORS, as_models
from fedmarket.algorithms.linalg import sorted_columns_reduce


@AGGREGATORS.register("median")
def median(models: np.ndarray) -> np.ndarray:
    models = as_models(models)
    lower, upper = (models.shape[0] - 1) // 2, models.shape[0] // 2
    return sorted_columns_reduce(models, lambda rows: (rows[:, lower] + rows[:, upper]) / 2)
