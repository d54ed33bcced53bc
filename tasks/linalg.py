"""Vectorised geometry shared by the robust rules: everything from one Gram matrix, in float64."""

from __future__ import annotations

import numpy as np


def pairwise_sq_distances(x: np.ndarray) -> np.ndarray:
    """||x_i - x_j||^2 for all pairs from one Gram matrix (no Python loop over pairs)."""
    x = np.asarray(x, dtype=np.float64)
    gram = x @ x.T
    sq = np.diag(gram)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))
