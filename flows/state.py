"""What the aggregator carries from round to round within one market run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedmarket.ml.data import Dataset
from schemas.market import TaskSpec
from schemas.rounds import RoundReport
from tasks.contribution import RoundModels
from tasks.outliers import History


def seed_int(seed: bytes) -> int:
    """A 32-byte on-chain seed as the 64-bit integer numpy generators take."""
    return int.from_bytes(seed[:8], "big")


@dataclass
class AggregatorState:
    market: str
    aggregator: str
    spec: TaskSpec
    validation: Dataset
    test: Dataset
    global_model: np.ndarray
    split_seed: int
    history: History = field(default_factory=History)
    rounds: list[RoundModels] = field(default_factory=list)
    reports: list[RoundReport] = field(default_factory=list)
