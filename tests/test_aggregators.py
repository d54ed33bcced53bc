"""Aggregation rules: exact values on hand-computed inputs, properties (hypothesis), and agreement
with byzfl and Flower on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedmarket.algorithms.aggregators import AGGREGATORS
from fedmarket.algorithms.aggregators.trimmed_mean import default_trim, trimmed_mean_of
from fedmarket.errors import ConfigError

MODELS = np.array([[1.0, 10.0], [2.0, -4.0], [3.0, 0.0], [100.0, 2.0], [-50.0, 1.0]])


def test_mean_exact():
    assert AGGREGATORS.get("mean")(MODELS[:3]).tolist() == pytest.approx([2.0, 2.0])


def test_median_exact_odd_and_even():
    assert AGGREGATORS.get("median")(MODELS).tolist() == [2.0, 1.0]
    assert AGGREGATORS.get("median")(MODELS[:4]).tolist() == [2.5, 1.0]  # means of the middle two


def test_trimmed_mean_exact():
    # f = 1 of 5: column 0 keeps 1, 2, 3 -> 2; column 1 keeps 0, 1, 2 -> 1
    assert trimmed_mean_of(MODELS, 1).tolist() == pytest.approx([2.0, 1.0])
    assert default_trim(8) == 3 and default_trim(10) == 4 and default_trim(7) == 2 and default_trim(2) == 0
    assert AGGREGATORS.get("trimmed_mean")(MODELS).tolist() == pytest.approx([2.0, 1.0])  # f = 2: the median


def test_bad_inputs_are_named():
    with pytest.raises(ConfigError, match="cannot trim 3 from each side of 5"):
        trimmed_mean_of(MODELS, 3)
    with pytest.raises(ConfigError, match="nothing to aggregate"):
        AGGREGATORS.get("median")(np.zeros((0, 3)))
    with pytest.raises(ConfigError, match="unknown aggregator 'mode'"):
        AGGREGATORS.get("mode")


matrices = arrays(np.float64, st.tuples(st.integers(1, 9), st.integers(1, 40)), elements=st.floats(-1e6, 1e6))


@given(matrices, st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None)
def test_rules_are_permutation_invariant_and_match_numpy(x, random):
    order = list(range(len(x)))
    random.shuffle(order)
    for name in ("mean", "median", "trimmed_mean"):
        assert np.allclose(AGGREGATORS.get(name)(x), AGGREGATORS.get(name)(x[order]), rtol=1e-12, atol=1e-6)
    assert np.array_equal(AGGREGATORS.get("median")(x), np.median(x, axis=0))


@given(
    arrays(np.float64, (9, 12), elements=st.floats(-10, 10)),
    st.integers(0, 4),
    arrays(np.float64, (4, 12), elements=st.floats(-1e12, 1e12)),
)
@settings(max_examples=60, deadline=None)
def test_median_breakdown_point(honest, corrupted, attack_values):
    # fewer than n/2 arbitrary rows cannot move any coordinate of the median outside the honest
    # range; the trimmed mean resists as many as it trims (3 of 9)
    x = honest.copy()
    x[:corrupted] = attack_values[:corrupted]
    kept = honest[corrupted:]
    for name in ("median", "trimmed_mean") if corrupted <= default_trim(9) else ("median",):
        out = AGGREGATORS.get(name)(x)
        assert np.all(out >= kept.min(axis=0) - 1e-9) and np.all(out <= kept.max(axis=0) + 1e-9)


def test_large_inputs_match_numpy_across_blocks():
    x = np.random.default_rng(0).normal(size=(7, 5000))  # several column blocks
    assert np.array_equal(AGGREGATORS.get("median")(x), np.median(x, axis=0))
    assert np.allclose(trimmed_mean_of(x, 2), np.sort(x, axis=0)[2:5].mean(axis=0))


def test_peers_agree_on_the_benchmark_inputs():
    """byzfl and Flower, in their own venv, give our results under their own definitions."""
    from fedmarket_benchmarks.aggregation import run

    rows = run([10], [2000])
    peers = [r for r in rows if not r.impl.startswith(("fedmarket.", "floor."))]
    assert {r.impl for r in peers} >= {
        "byzfl.MultiKrum",
        "flwr.aggregate_krum",
        "byzfl.TrMean",
        "flwr.aggregate_median",
    }
    disagreeing = {r.impl for r in peers if not r.agrees}
    # byzfl's torch path computes in float32 and its Median returns the lower middle value
    assert disagreeing <= {"byzfl.Krum[torch]", "byzfl.Median[torch]"}, disagreeing
    assert all(r.seconds > 0 for r in rows)
