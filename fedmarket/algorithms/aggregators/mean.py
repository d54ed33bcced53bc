"""FedAvg over the kept models with equal weights (sources/004, section II:
w(t+1) = (1/L) sum_i w_i(t) for equal-sized datasets; McMahan et al., AISTATS 2017).

Departure: the paper's weighted aggregation by data size needs trusted sizes; trainers' sizes are
not committed on chain, so all kept trainers weigh the same."""

from __future__ import annotations

import numpy as np

from fedmarket.algorithms.aggregators.base import AGGREGATORS, as_models


@AGGREGATORS.register("mean")
def mean(models: np.ndarray) -> np.ndarray:
    return as_models(models).mean(axis=0)
