"""Contribution metrics: exact values on hand-computed utilities, the Shapley axioms, and the
evaluation counts each method reports."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedmarket.algorithms.contribution import METRICS, CoalitionValue, RoundModels
from fedmarket.algorithms.contribution.rloo import rloo_subset, subset_size
from fedmarket.algorithms.contribution.shapley import exact_shapley
from fedmarket.errors import ConfigError

FIRST = lambda v: float(v[0])  # noqa: E731 - utility = first coordinate of the averaged model


def one_round(values, start=0.0, trainers=None):
    models = np.array([[v, 0.0] for v in values])
    return RoundModels(
        round=1,
        trainers=trainers or [chr(97 + i) for i in range(len(values))],
        models=models,
        start_model=np.array([start, 0.0]),
    )


def test_rloo_exact_values():
    # first coordinates 3, 1, 2 (start 0). With N=3, |S| = 2: C_i = avg(S) - avg(S minus i),
    # each normalised by the round's sum of |C|.
    rm = one_round([3.0, 1.0, 2.0])
    report = METRICS.get("rloo")([rm], FIRST, 7)
    raw = {}
    for i, t in enumerate("abc"):
        (j,) = sorted(rloo_subset(7, 1, i, 3) - {i})
        raw[t] = (rm.models[i, 0] + rm.models[j, 0]) / 2 - rm.models[j, 0]
    scale = sum(abs(v) for v in raw.values())
    assert report.total == pytest.approx({t: v / scale for t, v in raw.items()})
    assert report.evaluations <= 6


def test_rloo_single_trainer_compares_with_start_model():
    report = METRICS.get("rloo")([one_round([2.0], start=1.0)], FIRST, 0)
    assert report.total == {"a": 1.0}
    assert subset_size(1) == 1 and subset_size(5) == 3 and subset_size(2) == 2


def test_loo_exact_values():
    # v(abc) = 2; v(bc) = 1.5, v(ac) = 2.5, v(ab) = 2 -> raw 0.5, -0.5, 0; |sum| = 1
    report = METRICS.get("loo")([one_round([3.0, 1.0, 2.0])], FIRST, 0)
    assert report.total == pytest.approx({"a": 0.5, "b": -0.5, "c": 0.0})
    assert report.evaluations == 4


def test_exact_shapley_by_hand():
    # two players, v(empty) = 0, v(a) = 3, v(b) = 1, v(ab) = 2:
    # phi_a = (3 - 0 + 2 - 1) / 2 = 2, phi_b = (1 - 0 + 2 - 3) / 2 = 0
    value = CoalitionValue(one_round([3.0, 1.0]), FIRST)
    assert exact_shapley(2, value).tolist() == pytest.approx([2.0, 0.0])
    assert value.evaluations == 4
    report = METRICS.get("shapley")([one_round([3.0, 1.0])], FIRST, 0)
    assert report.total == pytest.approx({"a": 1.0, "b": 0.0})


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=6), st.floats(-5, 5))
@settings(max_examples=40, deadline=None)
def test_shapley_efficiency_and_symmetry(values, start):
    rm = one_round(values, start=start)
    phi = exact_shapley(len(values), CoalitionValue(rm, FIRST))
    # efficiency: the values add up to v(everyone) - v(empty)
    assert phi.sum() == pytest.approx(np.mean(values) - start, abs=1e-9)
    # symmetry: equal models get equal values
    for i in range(len(values)):
        for j in range(len(values)):
            if values[i] == values[j]:
                assert phi[i] == pytest.approx(phi[j], abs=1e-9)


def test_exact_shapley_refuses_large_rounds():
    with pytest.raises(ConfigError, match="2\\^13"):
        exact_shapley(13, CoalitionValue(one_round([1.0] * 13), FIRST))


def test_gtg_shapley_approximates_shapley_with_fewer_evaluations():
    values = [4.0, 1.0, 2.5, 3.0, 0.5, 2.0, 1.5]
    exact = METRICS.get("shapley")([one_round(values)], FIRST, 0)
    approx = METRICS.get("gtg_shapley")([one_round(values)], FIRST, 3)
    assert approx.evaluations < exact.evaluations == 2 ** len(values)
    for t in exact.total:
        assert approx.total[t] == pytest.approx(exact.total[t], abs=0.05)
    assert METRICS.get("gtg_shapley")([one_round(values)], FIRST, 3).total == approx.total  # seeded


def test_gtg_between_round_truncation():
    report = METRICS.get("gtg_shapley")([one_round([1.0, 1.0], start=1.0)], FIRST, 0)
    assert report.total == {"a": 0.0, "b": 0.0} and report.evaluations == 2
