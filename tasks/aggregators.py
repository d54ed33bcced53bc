"""Aggregation rules, registered by name. `mean` is FedAvg over the kept models with equal weights
(sources/004, section II: w(t+1) = (1/L) sum_i w_i(t) for equal-sized datasets).
Departure: the paper's weighted aggregation by data size needs trusted sizes; trainers' sizes are
not committed on chain, so all kept trainers weigh the same."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tasks.registry import Registry

Aggregator = Callable[[np.ndarray], np.ndarray]
AGGREGATORS: Registry[Aggregator] = Registry("aggregator")


@AGGREGATORS.register("mean")
def mean(models: np.ndarray) -> np.ndarray:
    if models.shape[0] == 0:
        raise ValueError("nothing to aggregate: no model was kept")
    return np.asarray(models, dtype=np.float64).mean(axis=0)
