"""The signature every outlier rule has: `rule(round, history) -> Detection`."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np

from fedmarket.algorithms.linalg import gram, sq_distances_from_gram
from fedmarket.algorithms.registry import Registry


@dataclass(frozen=True)
class RoundInput:
    """One round as a rule sees it: the local models (one float64 row per trainer), who sent
    them, the round number (1-based) and the global model the round started from."""

    models: np.ndarray
    trainers: list[str]
    round: int
    start: np.ndarray
    known_sq_distances: np.ndarray | None = None  # the models' pairwise ones, where a rule before had them
    known_update_gram: np.ndarray | None = None  # and their `update_gram`

    @property
    def size(self) -> int:
        return int(self.models.shape[0])

    @cached_property
    def update_gram(self) -> np.ndarray:
        """(w_i - start) . (w_j - start) for every pair: one Gram matrix for the round, shared by
        every rule that runs on it (each Gram is a pass over the whole matrix). Centred on the
        start model, as fedmarket/algorithms/linalg.centered_gram on a row: the honest updates
        are small whatever a minority of rows holds, so the distances keep their digits."""
        if self.known_update_gram is not None:
            return self.known_update_gram
        return gram(self.models, self.start)

    @cached_property
    def sq_distances(self) -> np.ndarray:
        """||w_i - w_j||^2 for every pair, from `update_gram`."""
        if self.known_sq_distances is not None:
            return self.known_sq_distances
        return sq_distances_from_gram(np.asarray(self.models, dtype=np.float64), self.update_gram)

    @property
    def sq_updates(self) -> np.ndarray:
        """||w_i - start||^2: the Gram's diagonal, sums of squares with no cancellation."""
        return np.diag(self.update_gram)

    def subset(self, rows: np.ndarray) -> RoundInput:
        """The round restricted to `rows` (ascending), its distances carried over; the matrix is
        copied only where rows are left out."""
        if len(rows) == self.size:
            return self
        return RoundInput(
            self.models[rows],
            [self.trainers[i] for i in rows],
            self.round,
            self.start,
            self.sq_distances[np.ix_(rows, rows)],
            self.update_gram[np.ix_(rows, rows)],
        )


@dataclass
class History:
    """What a rule may remember across rounds: the previous round's local models (one matrix,
    kept by reference, never copied row by row), who sent them, who was kept, and the global
    model that round started from."""

    last_models: np.ndarray | None = None
    last_trainers: list[str] = field(default_factory=list)
    last_kept: set[str] = field(default_factory=set)
    last_start: np.ndarray | None = None

    def update(self, round: RoundInput, kept: list[str]) -> None:
        self.last_models = round.models
        self.last_trainers = list(round.trainers)
        self.last_kept = set(kept)
        self.last_start = round.start

    def rows_for(self, trainers: list[str]) -> np.ndarray:
        """Row of each trainer's previous model in `last_models`, -1 where it has none."""
        where = {t: i for i, t in enumerate(self.last_trainers)}
        return np.array([where.get(t, -1) for t in trainers], dtype=np.int64)


@dataclass
class Detection:
    kept: list[int]  # row indices kept
    reasons: dict[int, str]  # row index -> why it was flagged
    cross_round_scores: dict[int, float] = field(default_factory=dict)
    cross_round_triggered: bool = False
    cross_trainer_scores: dict[int, float] = field(default_factory=dict)
    boundary: float | None = None

    @classmethod
    def keeping(cls, n: int, reasons: dict[int, str], **extra) -> Detection:
        return cls(kept=[i for i in range(n) if i not in reasons], reasons=reasons, **extra)


class Detector(Protocol):
    def __call__(self, round: RoundInput, history: History) -> Detection: ...


DETECTORS: Registry[Detector] = Registry("outlier detector")


@DETECTORS.register("none")
def keep_everyone(round: RoundInput, history: History) -> Detection:
    """No detection: plain FedAvg, or the robust aggregators (median, trimmed mean) on their own."""
    return Detection.keeping(round.size, {})
