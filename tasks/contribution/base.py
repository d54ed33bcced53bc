"""The signature every contribution metric has."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from schemas.settlement import ContributionReport
from tasks.registry import Registry


@dataclass(frozen=True)
class RoundModels:
    """The benign local models of one round and the global model the round started from."""

    round: int
    trainers: list[str]
    models: np.ndarray
    start_model: np.ndarray


Utility = Callable[[np.ndarray], float]  # model vector -> accuracy on the test set
Metric = Callable[[list[RoundModels], Utility, int], ContributionReport]
METRICS: Registry[Metric] = Registry("contribution metric")
