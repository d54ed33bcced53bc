"""The signature every outlier rule has."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tasks.registry import Registry


@dataclass
class History:
    """What a detector may remember across rounds: each trainer's last local model and the
    trainers kept in the previous round."""

    last_models: dict[str, np.ndarray] = field(default_factory=dict)
    last_kept: set[str] = field(default_factory=set)

    def update(self, trainers: list[str], models: np.ndarray, kept: list[str]) -> None:
        for trainer, row in zip(trainers, models):
            self.last_models[trainer] = row.copy()
        self.last_kept = set(kept)


@dataclass
class Detection:
    kept: list[int]  # row indices kept
    reasons: dict[int, str]  # row index -> why it was flagged
    cross_round_scores: dict[int, float] = field(default_factory=dict)
    cross_round_triggered: bool = False
    cross_trainer_scores: dict[int, float] = field(default_factory=dict)
    boundary: float | None = None


class Detector(Protocol):
    def __call__(self, models: np.ndarray, trainers: list[str], round: int, history: History) -> Detection: ...


DETECTORS: Registry[Detector] = Registry("outlier detector")
