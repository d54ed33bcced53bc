"""Order statistics written as torch arithmetic a circuit can run: Batcher's odd-even merge sort
(K. E. Batcher, "Sorting networks and their applications", AFIPS 1968) and a tournament for a
row's extreme, along the last axis.

A circuit has no data-dependent branch, so ranking n values by comparing every pair costs n^2
comparisons, and ranking each row of an n x n matrix n^3. A sorting network fixes its
comparators in advance: about n log^2 n / 4 of them, each one comparison, one product and three
additions. Wires are moved by gathers at constant positions, which add no rows to an EZKL circuit.
"""

from __future__ import annotations

from functools import cache

import torch


@cache
def batcher_layers(n: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The comparators (i, j), i < j, of Batcher's odd-even merge sort of n wires, in layers of
    disjoint pairs. Built for the next power of two; comparators that reach past n are dropped,
    which sorts n values as if the rest were +infinity (no such comparator would swap)."""
    size = 1 << max(n - 1, 0).bit_length()
    comparators: list[tuple[int, int]] = []

    def merge(lo: int, length: int, r: int) -> None:
        step = 2 * r
        if step < length:
            merge(lo, length, step)
            merge(lo + r, length, step)
            comparators.extend((i, i + r) for i in range(lo + r, lo + length - r, step))
        else:
            comparators.append((lo, lo + r))

    def sort(lo: int, length: int) -> None:
        if length > 1:
            half = length // 2
            sort(lo, half)
            sort(lo + half, half)
            merge(lo, length, 1)

    sort(0, size)
    depth = [0] * size
    layers: list[list[tuple[int, int]]] = []
    for i, j in comparators:
        if j >= n:
            continue
        layer = max(depth[i], depth[j])
        depth[i] = depth[j] = layer + 1
        if layer == len(layers):
            layers.append([])
        layers[layer].append((i, j))
    return tuple(tuple(layer) for layer in layers)


def _gather(values: torch.Tensor, index: list[int]) -> torch.Tensor:
    """values at constant positions along the last axis. The caller keeps `index` from being an
    increasing run of one or more positions: ONNX runtimes' optimisers (tract's, in EZKL) turn
    such a gather into a slice and push it up the graph, a pass over the whole graph each time."""
    return values.index_select(-1, torch.tensor(index))


def _compare_exchange(values: torch.Tensor, pairs: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """One layer: for each pair (i, j), the smaller value to i and the larger to j. Pairs are
    taken in decreasing order, and a lone pair twice (see _gather)."""
    n = int(values.shape[-1])
    pairs = tuple(sorted(pairs, reverse=True)) * (2 if len(pairs) == 1 else 1)
    a, b = _gather(values, [i for i, _ in pairs]), _gather(values, [j for _, j in pairs])
    low = b + (a - b) * (a < b).to(values.dtype)
    high = a + b - low
    source = list(range(n))
    for p, (i, j) in enumerate(pairs):
        source[i], source[j] = n + p, n + len(pairs) + p
    return _gather(torch.cat([values, low, high], dim=-1), source)


def sort_last(values: torch.Tensor) -> torch.Tensor:
    """values sorted ascending along the last axis."""
    for pairs in batcher_layers(int(values.shape[-1])):
        values = _compare_exchange(values, pairs)
    return values


def extreme_last(values: torch.Tensor, largest: bool = False) -> torch.Tensor:
    """The smallest (or largest) value along the last axis, kept as an axis of one: a tournament
    of about n comparisons (an odd one out meets itself; the final pair is played twice and one
    copy kept, see _gather)."""
    while (n := int(values.shape[-1])) > 1:
        if n == 2:
            left, right = [0, 0], [1, 1]
        else:
            left = [2 * p for p in reversed(range((n + 1) // 2))]
            right = [min(i + 1, n - 1) for i in left]
        a, b = _gather(values, left), _gather(values, right)
        first = (a > b) if largest else (a < b)
        values = b + (a - b) * first.to(values.dtype)
        if n == 2:
            return (values * torch.tensor([1.0, 0.0], dtype=values.dtype)).sum(dim=-1, keepdim=True)
    return values


def above_the_rest(values: torch.Tensor, among: torch.Tensor, gap: float) -> torch.Tensor:
    """values where `among` (0/1), elsewhere `gap` above the row's largest: what is not among then
    sorts after all that is."""
    top = extreme_last(values, largest=True) + gap
    return top + (values - top) * among
