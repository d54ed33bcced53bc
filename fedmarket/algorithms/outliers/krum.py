"""Krum and multi-Krum (Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant
Gradient Descent", NeurIPS 2017), used by the two-stage rule of sources/004 for its round-1
average and registered on their own.

Score of model i: the sum of squared distances to its n - f - 2 nearest other models. Krum keeps
the lowest score; multi-Krum keeps the m lowest (m = n - f by default) and averages them. All
distances come from one centered Gram matrix (fedmarket/algorithms/linalg.py).

Departures: when n - f - 2 < 1 (n <= f + 2) the score uses the single nearest neighbour rather
than being undefined; f defaults to the largest minority, floor((n - 1) / 2), because the market
assumes an honest majority and does not know f. Ties go to the lower row index.
"""

from __future__ import annotations

import numpy as np

from fedmarket.algorithms.aggregators.base import assumed_byzantine
from fedmarket.algorithms.linalg import pairwise_sq_distances
from fedmarket.algorithms.outliers.base import DETECTORS, Detection, History, RoundInput


def krum_neighbours(n: int, f: int) -> int:
    return min(max(n - f - 2, 1), max(n - 1, 0))


def krum_scores(
    models: np.ndarray, f: int, neighbours: int | None = None, sq_distances: np.ndarray | None = None
) -> np.ndarray:
    """Sum of squared distances to the `neighbours` nearest others (default n - f - 2);
    `sq_distances`: the models' pairwise ones, where already computed."""
    n = models.shape[0]
    if n == 1:
        return np.zeros(1)
    k = krum_neighbours(n, f) if neighbours is None else neighbours
    dist = (pairwise_sq_distances(models) if sq_distances is None else sq_distances).copy()
    np.fill_diagonal(dist, np.inf)
    # partition, not sort: only the k smallest of each row matter
    return np.partition(dist, k - 1, axis=1)[:, :k].sum(axis=1)


def multi_krum_select(
    models: np.ndarray,
    m: int,
    f: int | None = None,
    neighbours: int | None = None,
    sq_distances: np.ndarray | None = None,
) -> np.ndarray:
    """Row indices (ascending) of the m models with the lowest Krum scores."""
    n = models.shape[0]
    f = assumed_byzantine(n) if f is None else f
    scores = krum_scores(models, f, neighbours, sq_distances)
    return np.sort(np.argsort(scores, kind="stable")[: max(1, min(m, n))])


def multi_krum_average(models: np.ndarray, m: int, f: int | None = None, neighbours: int | None = None) -> np.ndarray:
    models = np.asarray(models, dtype=np.float64)
    weights = np.zeros(models.shape[0])
    selected = multi_krum_select(models, m, f, neighbours)
    weights[selected] = 1.0 / len(selected)
    return weights @ models  # one gemv pass; models[selected] would copy most of the matrix


def krum_model(models: np.ndarray, f: int | None = None, neighbours: int | None = None) -> np.ndarray:
    return np.asarray(models, dtype=np.float64)[multi_krum_select(models, 1, f, neighbours)[0]]


def _keep(round: RoundInput, m: int, label: str) -> Detection:
    keep = set(multi_krum_select(round.models, m=m, sq_distances=round.sq_distances).tolist())
    return Detection.keeping(round.size, {i: f"not selected by {label}" for i in range(round.size) if i not in keep})


@DETECTORS.register("krum")
def krum(round: RoundInput, history: History) -> Detection:
    """Keep the one model Krum selects."""
    return _keep(round, 1, "Krum")


@DETECTORS.register("multi_krum")
def multi_krum(round: RoundInput, history: History) -> Detection:
    """Keep the n - f models multi-Krum selects, f = floor((n - 1) / 2)."""
    return _keep(round, round.size - assumed_byzantine(round.size), "multi-Krum")
