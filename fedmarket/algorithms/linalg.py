"""Vectorised geometry shared by the robust rules, in float64.

Every pairwise quantity comes from one Gram matrix, never from a Python loop over pairs; row-wise
quantities come from BLAS dot products on rows that are still in cache. Large matrices are never
copied: a (100 x 1e6) float64 matrix is 800 MB, and a temporary of that size costs more than the
arithmetic (`fedmarket bench aggregation` times each kernel against the peers and a plain read).
"""

from __future__ import annotations

import math
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

BLOCK_COLUMNS = 8192  # 100 rows x 8192 float64 = 6.5 MB: a block stays in the last-level cache
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fresh_array(shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """A zeroed array in base pages, for a round's models. numpy advises huge pages on every
    large array, and where the kernel compacts memory to serve them (THP defrag "madvise" with RAM
    full of page cache) the first touch of a round's matrix stalls on it. numpy has no per-array
    switch for that advice, so the pages come from an anonymous private mapping, which gets none."""
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    pages = mmap.mmap(-1, max(count * dtype.itemsize, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(pages, dtype=dtype, count=count).reshape(shape)


def column_blocks(d: int, block: int = BLOCK_COLUMNS) -> list[slice]:
    return [slice(start, min(start + block, d)) for start in range(0, d, block)]


# Where ||a||^2 + ||b||^2 - 2 a.b has lost more than about 8 of float64's 16 digits to
# cancellation: below this fraction of ||a||^2 + ||b||^2, a distance is computed from a - b.
CANCELLATION = 1e-8


def centre_row(x: np.ndarray) -> int:
    """The row the Gram matrix is centred on: the one of median norm. Subtracting a row changes
    no distance, and one of the majority's keeps their coordinates small, whatever a minority of
    rows holds (a mean would move with one huge row, and every honest distance with it)."""
    norms = np.einsum("ij,ij->i", x, x)
    return int(np.argsort(norms, kind="stable")[(len(norms) - 1) // 2])


def gram(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(x_i - centre) . (x_j - centre) for every pair of rows of `x`.

    Each block of columns is centred in cache, into a buffer its thread reuses, and its Gram is a
    symmetric rank-k update (numpy calls BLAS syrk for `c @ c.T`), half the flops of a general
    product. The blocks are shared between the threads this process may run on, each running
    BLAS on one thread: the centring then runs on every core too, where threaded BLAS alone
    leaves it to one. The BLAS thread limit is the process's while the threads run (threadpoolctl
    has no per-thread one).
    """
    x, centre = np.asarray(x, dtype=np.float64), np.asarray(centre, dtype=np.float64)
    n = x.shape[0]
    blocks = column_blocks(x.shape[1])
    if n == 0:
        return np.zeros((0, 0))

    def work(part: list[slice]) -> np.ndarray:
        out, buffer = np.zeros((n, n)), np.empty((n, BLOCK_COLUMNS))
        for cols in part:
            c = buffer[:, : cols.stop - cols.start]
            np.subtract(x[:, cols], centre[cols], out=c)
            out += c @ c.T
        return out

    if THREADS == 1 or len(blocks) < 2 * THREADS:
        return work(blocks)
    with threadpool_limits(limits=1), ThreadPoolExecutor(THREADS) as pool:
        return sum(pool.map(work, [blocks[k::THREADS] for k in range(THREADS)]))


def centered_gram(x: np.ndarray) -> np.ndarray:
    """Gram matrix of the rows of `x` after subtracting the median-norm row (`centre_row`).
    Centering does not change any pairwise distance, and it removes the cancellation that
    ||a||^2 + ||b||^2 - 2 a.b suffers when models are large and close together."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 0:
        return np.zeros((0, 0))
    return gram(x, x[centre_row(x)])


def gram_to_sq_distances(centred: np.ndarray) -> np.ndarray:
    sq = np.diag(centred)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * centred, 0.0)


def sq_distances_from_gram(x: np.ndarray, centred: np.ndarray) -> np.ndarray:
    """||x_i - x_j||^2 for all pairs from `centred`, the Gram matrix of the rows about any one
    centre, and from the difference itself for the pairs where the Gram form cancelled too far
    to trust (rows close together and far from the centre)."""
    distances = gram_to_sq_distances(centred)
    sq = np.diag(centred)
    suspect = np.triu(distances <= CANCELLATION * (sq[:, None] + sq[None, :]), k=1)
    for i, j in zip(*np.nonzero(suspect)):
        diff = x[i] - x[j]
        distances[i, j] = distances[j, i] = diff @ diff
    np.fill_diagonal(distances, 0.0)
    return distances


def pairwise_sq_distances(x: np.ndarray) -> np.ndarray:
    """||x_i - x_j||^2 for all pairs: from one centred Gram matrix, and from the difference itself
    where that cancelled (near-copies of large rows), so every distance has float64's relative
    accuracy for any finite input."""
    x = np.asarray(x, dtype=np.float64)
    return sq_distances_from_gram(x, centered_gram(x))


def sq_distances_to_mean(centred: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """||x_i - m||^2 for every row, m the mean of the `reference` rows, from the Gram matrix of
    the rows about any centre c: |x_i - c|^2 - 2 (x_i - c).(m - c) + |m - c|^2, no pass over
    the rows."""
    if len(reference) == 0:
        return np.zeros(centred.shape[0])
    weights = np.zeros(centred.shape[0])
    weights[reference] = 1.0 / len(reference)
    along = centred @ weights
    return np.maximum(np.diag(centred) - 2.0 * along + weights @ along, 0.0)


@dataclass(frozen=True)
class RowStatistics:
    """What the two-stage rule needs after round 1, from one pass over the models."""

    sq_norms: np.ndarray  # ||w_i||^2
    dots_previous: np.ndarray  # w_i . p_i (0 where a trainer has no previous model)
    previous_sq_norms: np.ndarray  # ||p_i||^2 (0 where none)
    sq_distances: np.ndarray  # ||w_i - mean(w_r, r in reference)||^2

    def cosines(self) -> np.ndarray:
        """cos(w_i, p_i); 0 where either vector is zero or there is no previous model."""
        denominator = np.sqrt(self.sq_norms * self.previous_sq_norms)
        return np.divide(self.dots_previous, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def row_statistics(
    models: np.ndarray, previous: np.ndarray | None, previous_rows: np.ndarray, reference: np.ndarray
) -> RowStatistics:
    """Norms, dot products with each trainer's previous model (row `previous_rows[i]` of
    `previous`, -1 for none) and squared distances to the mean m of the `reference` rows.

    One pass to form m (a BLAS gemv), then one pass over the rows, each a handful of BLAS dot
    products on a row that is still in cache, so the matrix is read a few times, not once per
    statistic. Distances use ||w||^2 - 2 w.m + ||m||^2; in
    float64 the cancellation costs about 1e-16 ||w||^2 / ||w - m||^2 of relative error, far below
    what the mu + sigma cut resolves.
    """
    models = np.asarray(models, dtype=np.float64)
    n = models.shape[0]
    sq_norms, dots, previous_sq, to_mean = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    mean = None
    if len(reference):
        weights = np.zeros(n)
        weights[reference] = 1.0 / len(reference)
        mean = weights @ models  # a gemv reads the matrix once; models[reference] would copy it
    for i in range(n):
        w = models[i]
        sq_norms[i] = w @ w
        if previous is not None and previous_rows[i] >= 0:
            p = previous[previous_rows[i]]
            dots[i], previous_sq[i] = w @ p, p @ p
        if mean is not None:
            to_mean[i] = w @ mean
    sq_distances = np.maximum(sq_norms - 2.0 * to_mean + (mean @ mean), 0.0) if mean is not None else np.zeros(n)
    return RowStatistics(sq_norms, dots, previous_sq, sq_distances)


def update_cosines(updates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """cos(w_i - s, m - s) for every row, m the mean of the `reference` rows, from the Gram matrix
    of the updates w_i - s (`gram(models, s)`); 0 where either update is zero."""
    weights = np.zeros(updates.shape[0])
    weights[reference] = 1.0 / len(reference)
    along = updates @ weights
    denominator = np.sqrt(np.diag(updates) * (weights @ along))
    return np.divide(along, denominator, out=np.zeros_like(along), where=denominator > 0)


def rowwise_sq_distances(a: np.ndarray, b: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """||a_i - b[rows[i]]||^2 for every row of `a` (inf where rows[i] < 0), from the difference
    itself (no cancellation: this is what near-equality checks need)."""
    a = np.asarray(a, dtype=np.float64)
    out = np.full(a.shape[0], np.inf)
    for i in np.flatnonzero(rows >= 0):
        diff = a[i] - b[rows[i]]
        out[i] = diff @ diff
    return out


def sorted_columns_reduce(x: np.ndarray, reduce) -> np.ndarray:
    """out[j] = reduce(sorted column j), block by block: each block of columns is transposed into
    contiguous rows of n values, which numpy's vectorised sort handles far faster than strided
    columns; blocks are shared between the threads this process may run on.
    `reduce` maps a (block, n) array of sorted rows to a (block,) array."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape[1])
    blocks = column_blocks(x.shape[1], block=2048)

    def work(cols: slice) -> None:
        out[cols] = reduce(np.sort(np.ascontiguousarray(x[:, cols].T), axis=1))

    if THREADS == 1 or len(blocks) < 2 * THREADS:
        for cols in blocks:
            work(cols)
    else:
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(work, blocks))
    return out
