"""Sorting networks and tournaments as circuit arithmetic (fedmarket/algorithms/outliers/order.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fedmarket.algorithms.outliers.order import above_the_rest, batcher_layers, extreme_last, sort_last


@pytest.mark.parametrize("n", range(1, 18))
def test_batcher_network_sorts_every_zero_one_input(n):
    """The 0-1 principle: a comparator network sorts every input iff it sorts every 0/1 input."""
    layers = batcher_layers(n)
    if n <= 12:  # every 0/1 input at once, one row each
        x = torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=torch.float64)
        assert torch.equal(sort_last(x), torch.sort(x, dim=-1).values)
    for layer in layers:  # each layer's comparators touch disjoint wires, all inside n
        wires = [w for pair in layer for w in pair]
        assert len(wires) == len(set(wires)) and max(wires) < n
        assert all(i < j for i, j in layer)


def test_batcher_sizes_are_the_known_ones():
    assert [sum(map(len, batcher_layers(n))) for n in (2, 4, 8, 16, 32)] == [1, 5, 19, 63, 191]
    assert [len(batcher_layers(n)) for n in (2, 4, 8, 16, 32)] == [1, 3, 6, 10, 15]


def test_sort_and_extremes_along_the_last_axis():
    rng = np.random.default_rng(0)
    for n in range(1, 40):
        x = torch.from_numpy(rng.integers(-5, 5, size=(3, 2, n)).astype(np.float64))
        assert torch.equal(sort_last(x), torch.sort(x, dim=-1).values)
        assert torch.equal(extreme_last(x), x.amin(dim=-1, keepdim=True))
        assert torch.equal(extreme_last(x, largest=True), x.amax(dim=-1, keepdim=True))


def test_what_is_not_among_sorts_last():
    x = torch.tensor([[5.0, -1.0, 7.0, 2.0]], dtype=torch.float64)
    among = torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    assert above_the_rest(x, among, 0.5).tolist() == [[5.0, 7.5, 7.5, 2.0]]
    assert sort_last(above_the_rest(x, among, 0.5))[0, :2].tolist() == [2.0, 5.0]
