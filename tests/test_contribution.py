"""Contribution metrics: exact values on hand-computed utilities, the Shapley axioms, and the
evaluation counts each method reports."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fedmarket.algorithms.contribution import DEFAULT_METRIC, METRICS, CoalitionValue, RoundModels
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


# ---------------------------------------------------------------- update_shapley

SQUARE = lambda v: float(v[0] ** 2)  # noqa: E731 - a utility that is not linear in the model


def test_update_shapley_exact_values():
    # updates 3, 1, 2 from start 0, no two alike: v(S) = sum_{S} d_i / 3 is additive (FIRST), so
    # each trainer's value is its own step d_i / 3
    report = METRICS.get("update_shapley")([one_round([3.0, 1.0, 2.0])], FIRST, 0)
    assert report.total == pytest.approx({"a": 1.0, "b": 1 / 3, "c": 2 / 3})
    assert report.utility == "log_likelihood" and report.std_error == {"a": 0.0, "b": 0.0, "c": 0.0}
    # two players under v(S) = (sum_{S} d_i / 2)^2, d = (2, 4): v(a) = 1, v(b) = 4, v(ab) = 9;
    # phi_a = (1 - 0 + 9 - 4) / 2 = 3, phi_b = (4 - 0 + 9 - 1) / 2 = 6
    two = METRICS.get("update_shapley")([one_round([2.0, 4.0])], SQUARE, 0)
    assert two.total == pytest.approx({"a": 3.0, "b": 6.0})
    assert two.evaluations == 4


def test_update_shapley_sums_rounds_without_normalising_them():
    rounds = [one_round([3.0, 1.0, 2.0]), one_round([0.3, 0.1, 0.2])]
    rounds[1] = RoundModels(2, rounds[1].trainers, rounds[1].models, rounds[1].start_model)
    report = METRICS.get("update_shapley")(rounds, FIRST, 0)
    # the quiet second round adds a tenth of the first, not a round's worth of normalised noise
    assert report.total == pytest.approx({"a": 1.1, "b": 1.1 / 3, "c": 2.2 / 3})


def test_splitting_an_identity_gains_nothing():
    """Two trainers with the same update play as one and share its value: together they get what
    one of them alone gets in the round without the copy."""
    alone = METRICS.get("update_shapley")([one_round([3.0, 1.0, 2.0])], SQUARE, 0)
    split = METRICS.get("update_shapley")([one_round([3.0, 1.0, 2.0, 3.0])], SQUARE, 0)
    assert split.total["a"] == pytest.approx(split.total["d"])
    assert split.total["a"] + split.total["d"] == pytest.approx(alone.total["a"])
    assert split.total["b"] == pytest.approx(alone.total["b"])


def test_above_the_exact_limit_permutations_estimate_it_with_errors():
    rng = np.random.default_rng(4)
    models = rng.normal(0, 1, size=(12, 12))  # twelve updates, no two alike
    names = [f"t{i}" for i in range(12)]
    rm = RoundModels(1, names, models, np.zeros(12))
    linear = METRICS.get("update_shapley")([rm], FIRST, 3)  # additive: every order gives the exact value
    assert linear.total == pytest.approx({t: models[i, 0] / 12 for i, t in enumerate(names)})
    assert max(linear.std_error.values()) < 1e-8  # zero up to rounding
    square = METRICS.get("update_shapley")([rm], SQUARE, 3)
    # (sum of d_i / 12)^2 over the first coordinate: each player's Shapley value is d_i/12 times the total
    exact = {t: models[i, 0] / 12 * models[:, 0].sum() / 12 for i, t in enumerate(names)}
    for t, phi in square.total.items():
        assert abs(phi - exact[t]) <= 4 * square.std_error[t] + 1e-12
    assert min(square.std_error.values()) > 0


@pytest.mark.parametrize("metric", ["update_shapley", "update_loo"])
@settings(max_examples=25, deadline=None)
@given(st.permutations(range(5)), st.lists(st.floats(-2, 2), min_size=5, max_size=5))
# three close pairs at one distance: the order of the rows must not decide the groups
@example(order=[0, 2, 1, 3, 4], values=[0.1, 0.0, 0.2, 0.0, 1.0])
def test_permuting_trainers_permutes_their_contributions(metric, order, values):
    names = [f"t{i}" for i in range(5)]
    base = METRICS.get(metric)([one_round(values, trainers=names)], SQUARE, 1)
    shuffled = METRICS.get(metric)(
        [one_round([values[i] for i in order], trainers=[names[i] for i in order])], SQUARE, 1
    )
    assert shuffled.total == pytest.approx(base.total, abs=1e-12)


# ---------------------------------------------------------------- update_loo (the default)


def test_update_loo_exact_values():
    # updates 3, 1, 2 from start 0 under v(S) = (sum_{S} d_i / 3)^2: the whole step is 2, so
    # v(all) = 4; without a: (1/3 + 2/3)^2 = 1, without b: (5/3)^2, without c: (4/3)^2
    report = METRICS.get("update_loo")([one_round([3.0, 1.0, 2.0])], SQUARE, 0)
    assert report.total == pytest.approx({"a": 3.0, "b": 4 - 25 / 9, "c": 4 - 16 / 9})
    assert report.evaluations == 6 and report.utility == "log_likelihood"  # N + G
    assert report.std_error == {"a": 0.0, "b": 0.0, "c": 0.0}
    # one trainer: the whole step (1 -> 2) against the start model
    alone = METRICS.get("update_loo")([one_round([2.0], start=1.0)], SQUARE, 0)
    assert alone.total == pytest.approx({"a": 4.0 - 1.0})


def test_a_near_duplicate_pair_is_worth_its_weaker_member():
    # 3.0 and 3.1 are one player (0.1 apart; the median distance is 1.05): G = 3, the rest of the
    # step without them (1 + 2) / 3 = 1, v = 1; a's own update in the pair's place: (1 + 1)^2,
    # d's: (1 + 3.1 / 3)^2; the pair takes the smaller gain, a's, and each member half of it
    report = METRICS.get("update_loo")([one_round([3.0, 1.0, 2.0, 3.1])], SQUARE, 0)
    pair = min(2.0**2 - 1, (1 + 3.1 / 3) ** 2 - 1)
    assert report.total["a"] == pytest.approx(pair / 2) and report.total["d"] == pytest.approx(pair / 2)
    # b against the step of the pair's mean update and c: (3.05 + 2) / 3 without b
    rest = (3.05 + 2.0) / 3
    assert report.total["b"] == pytest.approx((rest + 1 / 3) ** 2 - rest**2)


def test_update_loo_sums_rounds_and_shares_a_copied_update():
    rounds = [one_round([3.0, 1.0, 2.0]), one_round([3.0, 1.0, 2.0, 3.0])]
    rounds[1] = RoundModels(2, rounds[1].trainers, rounds[1].models, rounds[1].start_model)
    report = METRICS.get("update_loo")(rounds, SQUARE, 0)
    # round 2: a and d hold one update and play as one player with it, each taking half
    assert report.per_round[1]["a"] == pytest.approx(report.per_round[1]["d"]) == pytest.approx(1.5)
    assert report.per_round[1]["b"] == pytest.approx(report.per_round[0]["b"])
    assert report.total["a"] == pytest.approx(3.0 + 1.5) and report.total["d"] == pytest.approx(1.5)


def test_the_default_measure_meets_the_fairness_targets_on_a_small_market():
    """IID, label-disjoint, rare labels, a noisy trainer and a split identity on digits: 5 and 8
    trainers, 2 rounds, one seed (seconds); `fedmarket bench contribution` runs the full study.
    At 8 label-disjoint trainers six hold one label each; update_shapley valued some below zero."""
    from fedmarket_benchmarks.contribution import SCENARIOS, run

    assert DEFAULT_METRIC == "update_loo"
    _, fairness = run(list(SCENARIOS), [DEFAULT_METRIC], trainers=(5, 8), rounds=2, seeds=(0,))
    for n in (5, 8):
        checks = {f.scenario: f for f in fairness if f.trainers == n}
        assert checks["iid"].check <= 0.2
        assert checks["label_disjoint"].check > 0
        assert 0 < checks["rare_labels"].check <= 2
        assert checks["noisy_labels"].check < 0
        assert checks["duplicated"].check <= 1.0  # no gain from splitting an identity
