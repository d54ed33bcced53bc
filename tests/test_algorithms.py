"""Exact values on hand-computed inputs, and the detector on the attacks it targets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tasks.aggregators import AGGREGATORS
from tasks.attacks import ATTACKS
from tasks.contribution import METRICS, RoundModels
from tasks.contribution.rloo import subset_size
from tasks.linalg import pairwise_sq_distances
from tasks.outliers import DETECTORS, History
from tasks.outliers.krum import krum_scores, multi_krum_select

POINTS = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0]])


def test_pairwise_distances_exact():
    d = pairwise_sq_distances(POINTS)
    assert d[0, 1] == 1 and d[1, 2] == 2 and d[0, 3] == 200 and d[1, 3] == 181
    assert np.all(np.diag(d) == 0)


@given(arrays(np.float64, (6, 5), elements=st.floats(-100, 100)))
@settings(max_examples=50, deadline=None)
def test_pairwise_distances_match_naive(x):
    naive = np.array([[np.sum((a - b) ** 2) for b in x] for a in x])
    assert np.allclose(pairwise_sq_distances(x), naive, atol=1e-6 * (1 + naive.max()))


def test_krum_scores_exact():
    # n=4, f=1: each point sums its n-f-2 = 1 nearest squared distance
    assert krum_scores(POINTS, f=1).tolist() == [1.0, 1.0, 1.0, 181.0]
    assert multi_krum_select(POINTS, m=2, f=1).tolist() == [0, 1]


def test_mean_exact():
    assert AGGREGATORS.get("mean")(POINTS[:3]).tolist() == pytest.approx([1 / 3, 1 / 3])


def test_two_stage_paper_rule_exact():
    # round 1: f = 2, so Krum scores use the 1 nearest neighbour: 1, 0, 1, 0, 181. m-Krum (m=2)
    # averages rows 1 and 3 -> (1, 0); distances 1, 0, sqrt 2, 0, sqrt 181 ->
    # mu = 3.17356, sample sigma = 5.78020; only row 4 is beyond mu + sigma = 8.95376
    models = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [10.0, 10.0]])
    names = [f"t{i}" for i in range(5)]
    result = DETECTORS.get("two_stage")(models, names, 1, History())
    assert result.kept == [0, 1, 2, 3]
    assert result.boundary == pytest.approx(8.95376, abs=1e-5)
    assert "cross-trainer" in result.reasons[4]


def test_cross_round_check_flags_a_turned_model():
    history = History()
    names = ["a", "b", "c", "d"]
    previous = np.array([[1.0, 0.0], [1.0, 0.1], [0.9, 0.0], [1.0, 0.05]])
    history.update(names, previous, names)
    current = previous.copy()
    current[3] = [-1.0, 0.2]  # cosine with its own previous model ~ -0.97
    result = DETECTORS.get("two_stage")(current, names, 2, history)
    assert result.cross_round_triggered
    assert result.cross_round_scores[3] < 0.3 and 3 not in result.kept
    assert "cross-round cosine" in result.reasons[3]


def honest_round(rng, n=8, d=50, spread=0.05):
    start = rng.normal(size=d)
    direction = rng.normal(size=d)
    return start, np.stack([start + 0.5 * direction + spread * rng.normal(size=d) for _ in range(n)])


@pytest.mark.parametrize("attack", ["noise", "sign_flip", "scale"])
def test_iterated_detector_catches_each_attack_alone_and_together(attack):
    rng = np.random.default_rng(1)
    start, models = honest_round(rng)
    names = [f"t{i}" for i in range(8)]
    models[5] = ATTACKS.get(attack)(models[5], start, rng)
    result = DETECTORS.get("two_stage_iterated")(models, names, 1, History())
    assert result.kept == [0, 1, 2, 3, 4, 6, 7]
    for i, name in zip((1, 4, 6), ("noise", "sign_flip", "scale")):
        models[i] = ATTACKS.get(name)(models[i], start, rng)
    result = DETECTORS.get("two_stage_iterated")(models, names, 1, History())
    assert sorted(set(range(8)) - set(result.kept)) == [1, 4, 5, 6]


def test_paper_single_pass_is_masked_where_iterated_is_not():
    rng = np.random.default_rng(2)
    start, models = honest_round(rng)
    models[0] = ATTACKS.get("scale")(models[0], start, rng, factor=40.0)
    models[1] = ATTACKS.get("sign_flip")(models[1], start, rng)
    names = [f"t{i}" for i in range(8)]
    assert 1 in DETECTORS.get("two_stage")(models, names, 1, History()).kept
    assert 1 not in DETECTORS.get("two_stage_iterated")(models, names, 1, History()).kept


@given(st.permutations(list(range(6))))
@settings(max_examples=30, deadline=None)
def test_detector_is_permutation_invariant(order):
    rng = np.random.default_rng(3)
    start, models = honest_round(rng, n=6)
    models[2] = ATTACKS.get("sign_flip")(models[2], start, rng)
    names = [f"t{i}" for i in range(6)]
    base = {names[i] for i in DETECTORS.get("two_stage_iterated")(models, names, 1, History()).kept}
    perm = DETECTORS.get("two_stage_iterated")(models[order], [names[i] for i in order], 1, History())
    assert {names[order[i]] for i in perm.kept} == base


def test_rloo_exact_values():
    # utility = first coordinate; models' first coordinates 3, 1, 2 (start model 0). With N=3,
    # |S| = 2: C_i = avg(S) - avg(S minus i), each normalised by the round's sum of |C|.
    models = np.array([[3.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    rm = RoundModels(round=1, trainers=["a", "b", "c"], models=models, start_model=np.zeros(2))
    report = METRICS.get("rloo")([rm], lambda v: float(v[0]), 7)
    raw = {}
    for i, t in enumerate("abc"):
        rng = np.random.default_rng([7, 1, i])
        (j,) = rng.choice([k for k in range(3) if k != i], size=1, replace=False)
        raw[t] = (models[i, 0] + models[j, 0]) / 2 - models[j, 0]
    scale = sum(abs(v) for v in raw.values())
    assert report.total == pytest.approx({t: v / scale for t, v in raw.items()})
    assert report.evaluations <= 6


def test_rloo_single_trainer_compares_with_start_model():
    rm = RoundModels(round=1, trainers=["a"], models=np.array([[2.0]]), start_model=np.array([1.0]))
    report = METRICS.get("rloo")([rm], lambda v: float(v[0]), 0)
    assert report.total == {"a": 1.0}
    assert subset_size(1) == 1 and subset_size(5) == 3 and subset_size(2) == 2
