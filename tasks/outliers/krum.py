"""Krum and multi-Krum (Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant
Gradient Descent", NeurIPS 2017), used by the two-stage rule of sources/004 for the round-1
average and registered on their own.

Score of model i: the sum of squared distances to its n - f - 2 nearest other models. Krum keeps
the lowest score; multi-Krum keeps the m lowest. Departure: when n - f - 2 < 1 (n <= f + 2) the
score uses the single nearest neighbour rather than being undefined.
"""

from __future__ import annotations

import numpy as np

from tasks.linalg import pairwise_sq_distances
from tasks.outliers.base import DETECTORS, Detection, History


def assumed_byzantine(n: int) -> int:
    """The largest minority: the paper assumes an honest majority (sources/004, Alg. 1)."""
    return max(0, (n - 1) // 2)


def krum_scores(models: np.ndarray, f: int) -> np.ndarray:
    n = models.shape[0]
    if n == 1:
        return np.zeros(1)
    dist = pairwise_sq_distances(models)
    np.fill_diagonal(dist, np.inf)
    neighbours = min(max(n - f - 2, 1), n - 1)
    return np.sort(dist, axis=1)[:, :neighbours].sum(axis=1)


def multi_krum_select(models: np.ndarray, m: int, f: int | None = None) -> np.ndarray:
    """Row indices of the m models with the lowest Krum scores (ties by index)."""
    n = models.shape[0]
    f = assumed_byzantine(n) if f is None else f
    scores = krum_scores(models, f)
    return np.sort(np.argsort(scores, kind="stable")[: max(1, min(m, n))])


def multi_krum_average(models: np.ndarray, m: int, f: int | None = None) -> np.ndarray:
    return models[multi_krum_select(models, m, f)].mean(axis=0)


@DETECTORS.register("multi_krum")
def multi_krum(models: np.ndarray, trainers: list[str], round: int, history: History) -> Detection:
    """Keep the ceil(n/2) models multi-Krum selects; flag the rest."""
    n = models.shape[0]
    keep = multi_krum_select(models, m=n - assumed_byzantine(n))
    reasons = {i: "not selected by multi-Krum" for i in range(n) if i not in set(keep.tolist())}
    return Detection(kept=keep.tolist(), reasons=reasons)
