"""Outlier rules: exact values on hand-computed inputs, properties, and the rules on the attacks
they target (synthetic rounds here; real training in tests/test_attacks.py)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedmarket.algorithms.linalg import (
    fresh_array,
    gram,
    pairwise_sq_distances,
    row_statistics,
    rowwise_sq_distances,
    sq_distances_to_mean,
    update_cosines,
)
from fedmarket.algorithms.outliers import DETECTORS, History, RoundInput
from fedmarket.algorithms.outliers.krum import krum_model, krum_scores, multi_krum_average, multi_krum_select
from fedmarket.algorithms.outliers.two_stage import GUARDED_RULE, _remove_beyond_boundary, detect
from fedmarket.simulation.attacks import ATTACKS, AttackContext

POINTS = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0]])


def names(n):
    return [f"t{i}" for i in range(n)]


def round_of(models, round=1, start=None):
    models = np.asarray(models, dtype=np.float64)
    return RoundInput(models, names(len(models)), round, np.zeros(models.shape[1]) if start is None else start)


def test_pairwise_distances_exact():
    d = pairwise_sq_distances(POINTS)
    assert d[0, 1] == pytest.approx(1) and d[1, 2] == pytest.approx(2)
    assert d[0, 3] == pytest.approx(200) and d[1, 3] == pytest.approx(181)
    assert np.all(np.diag(d) == 0)


@given(arrays(np.float64, (6, 5), elements=st.floats(-100, 100)))
@settings(max_examples=50, deadline=None)
def test_pairwise_distances_match_naive(x):
    naive = np.array([[np.sum((a - b) ** 2) for b in x] for a in x])
    assert np.allclose(pairwise_sq_distances(x), naive, atol=1e-9 * (1 + naive.max()))


def test_centered_gram_keeps_precision_for_large_close_models():
    # models of norm ~1e6 that differ by ~1e-3: the uncentered expansion loses every digit
    rng = np.random.default_rng(0)
    base = 1e6 * rng.normal(size=1000)
    x = base + 1e-3 * rng.normal(size=(4, 1000))
    naive = np.array([[np.sum((a - b) ** 2) for b in x] for a in x])
    assert np.allclose(pairwise_sq_distances(x), naive, rtol=1e-6)


def test_row_statistics_exact():
    models = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    previous = np.array([[0.0, 1.0], [2.0, 0.0]])
    stats = row_statistics(models, previous, np.array([1, 0, -1]), np.array([1, 2]))
    assert stats.sq_norms.tolist() == [25.0, 1.0, 4.0]
    assert stats.dots_previous.tolist() == [6.0, 0.0, 0.0]
    assert stats.previous_sq_norms.tolist() == [4.0, 1.0, 0.0]
    assert stats.cosines().tolist() == pytest.approx([6 / 10, 0.0, 0.0])
    # mean of rows 1 and 2 = (0.5, 1): distances^2 = 2.5^2 + 3^2, 0.5^2 + 1, 0.5^2 + 1
    assert stats.sq_distances.tolist() == pytest.approx([15.25, 1.25, 1.25])
    assert rowwise_sq_distances(models, previous, np.array([1, -1, 0])).tolist() == [17.0, np.inf, 1.0]


def test_krum_scores_exact():
    # n=4, f=1: each point sums its n-f-2 = 1 nearest squared distance
    assert krum_scores(POINTS, f=1).tolist() == pytest.approx([1.0, 1.0, 1.0, 181.0])
    assert multi_krum_select(POINTS, m=2, f=1).tolist() == [0, 1]
    assert multi_krum_average(POINTS, m=3, f=1).tolist() == pytest.approx([1 / 3, 1 / 3])
    assert krum_model(POINTS, f=1).tolist() == [0.0, 0.0]
    # two neighbours: 1+1, 1+2, 1+2, 181+181
    assert krum_scores(POINTS, f=1, neighbours=2).tolist() == pytest.approx([2.0, 3.0, 3.0, 362.0])


def test_krum_and_multi_krum_detectors_keep_the_cluster():
    # n = 5, f = 2, one neighbour. Row 4 = (0.4, 0.35) is 0.2825, 0.4825, 0.5825 and 185.2825 from
    # rows 0..3 (squared), so the scores are 0.2825, 0.4825, 0.5825, 181, 0.2825
    models = np.vstack([POINTS, [[0.4, 0.35]]])
    assert krum_scores(models, f=2).tolist() == pytest.approx([0.2825, 0.4825, 0.5825, 181.0, 0.2825])
    krum = DETECTORS.get("krum")(round_of(models), History())
    assert krum.kept in ([0], [4]) and len(krum.reasons) == 4  # rows 0 and 4 tie
    multi = DETECTORS.get("multi_krum")(round_of(models), History())
    assert multi.kept == [0, 1, 4] and multi.reasons[3] == "not selected by multi-Krum"


def test_two_stage_paper_rule_exact():
    # round 1: f = 2, so Krum scores use the 1 nearest neighbour: 1, 0, 1, 0, 181. m-Krum (m=2)
    # averages rows 1 and 3 -> (1, 0); distances 1, 0, sqrt 2, 0, sqrt 181 ->
    # mu = 3.17356, sample sigma = 5.78020; only row 4 is beyond mu + sigma = 8.95376
    models = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [10.0, 10.0]])
    result = DETECTORS.get("two_stage")(round_of(models), History())
    assert result.kept == [0, 1, 2, 3]
    assert result.boundary == pytest.approx(8.95376, abs=1e-5)
    assert "cross-trainer" in result.reasons[4]


def history_after(previous, kept=None):
    history = History()
    r = round_of(previous)
    history.update(r, kept if kept is not None else r.trainers)
    return history


def test_paper_rule_only_triggers_on_a_turned_model_and_removes_by_distance():
    previous = np.array([[1.0, 0.0], [1.0, 0.1], [0.9, 0.0], [1.0, 0.05]])
    current = previous.copy()
    current[3] = [-1.0, 0.2]  # cosine with its own previous model ~ -0.97
    result = DETECTORS.get("two_stage")(round_of(current, round=2), history_after(previous))
    assert result.cross_round_triggered
    assert result.cross_round_scores[3] < 0.3
    # the paper does not remove on the cosine: row 3 goes because stage 2 puts it beyond the boundary
    # (w_avg = mean of all four, distances 0.53, 0.53, 0.43, 1.48; boundary 1.23)
    assert result.kept == [0, 1, 2] and "cross-trainer" in result.reasons[3]


def test_paper_rule_does_nothing_without_a_cross_round_alarm():
    rng = np.random.default_rng(6)
    start, previous = honest_round(rng)
    models = start + 0.9 * (previous - start) + 0.05 * rng.normal(size=previous.shape)
    models[0] = start + 8.0 * (models[0] - start)  # boosted, but still pointing the same way
    history = history_after(previous)
    result = DETECTORS.get("two_stage")(round_of(models, round=2, start=start), history)
    assert min(result.cross_round_scores.values()) > 0.3
    assert not result.cross_round_triggered and result.kept == list(range(8)) and result.cross_trainer_scores == {}
    guarded = DETECTORS.get("two_stage_guarded")(round_of(models, round=2, start=start), history)
    assert guarded.kept == list(range(1, 8))  # the default runs stage 2 every round


def test_iterated_rule_removes_cross_round_failures():
    previous = np.array([[1.0, 0.0], [1.0, 0.1], [0.9, 0.0], [1.0, 0.05], [1.0, -0.05]])
    current = previous.copy()
    current[4] = [-0.2, 1.0]
    result = DETECTORS.get("two_stage_iterated")(round_of(current, round=2), history_after(previous))
    assert "cross-round cosine" in result.reasons[4]


def test_guarded_rule_keeps_models_turned_by_dp_noise_and_removes_the_turned_away_one():
    """Under DP-SGD honest models drift with the noise, every cosine below the paper's 0.3: the
    default fails a trainer in stage 1 only under half the round's median cosine too (0.1 here).
    The honest four turned 78 degrees each, in four directions: all as far from their mean, their
    updates from the start sharing the last axis (so none points away from the reference's)."""
    side = np.sqrt(1 - 0.2**2)
    current = np.array(
        [[0.2, side, 0, 0], [0.2, 0, side, 0], [0.2, -side, 0, 0], [0.2, 0, -side, 0], [-0.9, np.sqrt(0.19), 0, 0]]
    )
    history = history_after(np.array([[1.0, 0.0, 0.0, 0.0]] * 5))
    start = np.array([0.2, 0.0, 0.0, -1.0])
    guarded = DETECTORS.get("two_stage_guarded")(round_of(current, round=2, start=start), history)
    assert guarded.cross_round_scores == pytest.approx({0: 0.2, 1: 0.2, 2: 0.2, 3: 0.2, 4: -0.9})
    assert guarded.kept == [0, 1, 2, 3]
    assert guarded.reasons == {4: "cross-round cosine -0.900 < 0.1"}
    assert DETECTORS.get("two_stage_iterated")(round_of(current, round=2, start=start), history).kept == []


def test_update_cosines_exact():
    # start (1, 1); reference rows 0 and 1 average to (3, 1): direction (2, 0)
    models = np.array([[2.0, 1.0], [4.0, 1.0], [1.0, 3.0], [0.0, 1.0], [1.0, 1.0]])
    cosines = update_cosines(gram(models, np.array([1.0, 1.0])), np.array([0, 1]))
    assert cosines == pytest.approx([1.0, 1.0, 0.0, -1.0, 0.0])  # the last update is zero


def test_guarded_rule_removes_an_update_pointing_away_unless_half_do():
    """Honest updates share +0.5 along the first axis and spread 1 each along another; the flipped
    one is -0.5 along the first: as far from the honest mean as each of them, and at cosine 1 with
    its own last model, so only the vote (cosine -0.45 with every honest update) and, without it,
    the direction check remove it. With 3 of 6 flipped both stand down."""
    start = np.zeros(5)
    start[0] = 10.0

    def model(first, other=None, size=1.0):
        w = start.copy()
        w[0] += first
        if other is not None:
            w[abs(other)] += size if other > 0 else -size
        return w

    honest = [model(0.5, axis) for axis in (1, -1, 2, -2, 3, -3)]
    models = np.array([*honest, model(-0.5)])
    last_round = start + 0.9 * (models - start)  # kept whole: the reference is their mean
    result = DETECTORS.get("two_stage_guarded")(round_of(models, round=2, start=start), history_after(last_round))
    assert result.reasons == {6: "update at a cosine < -0.3 with 6 of the 6 other updates"}
    assert result.cross_trainer_scores == pytest.approx({i: 1.0 for i in range(7)})
    no_vote = dataclasses.replace(GUARDED_RULE, vote_cosine=None)
    result = detect(round_of(models, round=2, start=start), history_after(last_round), no_vote)
    assert result.reasons == {6: "update cosine -1.000 to the reference's < -0.2"}
    half = np.array([*honest[:3], *(model(-0.5, axis, 0.05) for axis in (1, 2, 3))])  # not copies
    last_round = start + 0.9 * (half - start)
    result = DETECTORS.get("two_stage_guarded")(round_of(half, round=2, start=start), history_after(last_round))
    assert not any("cosine" in why or "replay" in why for why in result.reasons.values())


def test_guarded_rule_widens_its_guard_with_the_rounds_spread():
    """Wine's honest distances of round 1 (8 shares of 15 rows), over their median: 1.5x the median
    alone removes three, pass after pass; median + 2.5 scaled MADs (2.02x here) keeps them. A
    round as tight as digits' keeps the 1.5x guard and still removes a model at 1.6x."""
    wide = np.array([0.64, 0.77, 0.78, 0.93, 1.07, 1.32, 1.51, 1.54])
    reasons: dict[int, str] = {}
    _remove_beyond_boundary(wide, reasons, GUARDED_RULE)
    assert reasons == {}
    _remove_beyond_boundary(wide, reasons, dataclasses.replace(GUARDED_RULE, spread_guard=None))
    assert sorted(reasons) == [5, 6, 7]
    tight = np.array([0.98, 0.99, 1.0, 1.0, 1.01, 1.02, 1.03, 1.6])
    reasons = {}
    _remove_beyond_boundary(tight, reasons, GUARDED_RULE)
    assert list(reasons) == [7]


def honest_round(rng, n=8, d=50, spread=0.05):
    start = rng.normal(size=d)
    direction = rng.normal(size=d)
    return start, np.stack([start + 0.5 * direction + spread * rng.normal(size=d) for _ in range(n)])


def attack(name, models, i, start, rng, honest_rows, previous=None, colluders=1):
    context = AttackContext(models[i], start, models[honest_rows], previous, len(models), colluders, rng)
    return ATTACKS.get(name).craft(context)


@pytest.mark.parametrize("name", ["noise", "sign_flip", "scale"])
def test_iterated_detector_catches_each_attack_alone_and_together(name):
    rng = np.random.default_rng(1)
    start, models = honest_round(rng)
    honest = [0, 2, 3, 7]
    models[5] = attack(name, models, 5, start, rng, honest)
    result = DETECTORS.get("two_stage_iterated")(round_of(models, start=start), History())
    assert result.kept == [0, 1, 2, 3, 4, 6, 7]
    for i, other in zip((1, 4, 6), ("noise", "sign_flip", "scale")):
        models[i] = attack(other, models, i, start, rng, honest)
    result = DETECTORS.get("two_stage_iterated")(round_of(models, start=start), History())
    assert sorted(set(range(8)) - set(result.kept)) == [1, 4, 5, 6]


def test_paper_single_pass_is_masked_where_iterated_is_not():
    rng = np.random.default_rng(2)
    start, models = honest_round(rng)
    models[0] = start + 40.0 * (models[0] - start)
    models[1] = attack("sign_flip", models, 1, start, rng, [2, 3])
    assert 1 in DETECTORS.get("two_stage")(round_of(models, start=start), History()).kept
    assert 1 not in DETECTORS.get("two_stage_iterated")(round_of(models, start=start), History()).kept


def test_replay_check_names_free_riders_replays_and_copies():
    rng = np.random.default_rng(4)
    start, previous = honest_round(rng)
    history = history_after(previous)
    history.last_start = start
    _, models = honest_round(np.random.default_rng(5))
    models = models - models.mean(axis=0) + start + 0.5  # a fresh honest round around `start`
    models[1] = start + 1e-6
    models[2] = previous[2]
    models[6] = models[5]
    result = DETECTORS.get("replay")(round_of(models, round=2, start=start), history)
    assert sorted(result.reasons) == [1, 2, 5, 6]
    assert result.reasons[1].startswith("free-riding") and result.reasons[2].startswith("replay")
    assert result.reasons[5].startswith("copy") and "t6" in result.reasons[5]


def test_near_copies_are_closer_than_the_median_nearest_neighbour():
    """Six models on their own axes, two more 0.3 apart around 0.7 on a seventh: the six's nearest is
    the pair, at sqrt(1 + 0.49 + 0.0225) = 1.23, the median; the pair's is 0.3 <= 0.25 x 1.23, so
    both go, and nobody else; 0.4 apart, neither does."""
    start = np.zeros(8)

    def round_with(gap):
        models = np.array([start + np.eye(8)[i] for i in range(6)] + [start + 0.7 * np.eye(8)[6]] * 2)
        models[6, 7] += gap / 2
        models[7, 7] -= gap / 2
        return round_of(models, start=start)

    result = DETECTORS.get("replay")(round_with(0.3), History())
    assert sorted(result.reasons) == [6, 7]
    assert result.reasons[6] == "near-copy: distance 0.3 to t7's model <= 0.25 x the median nearest distance 1.23"
    assert DETECTORS.get("replay")(round_with(0.4), History()).reasons == {}


def test_the_vote_removes_a_minority_against_the_majority_and_stands_down_for_two_camps():
    """Updates u_i along their own axes plus 1 along the first; two colluders at -2 along the first
    (cosine -0.63 with every honest one, 0.8 with each other) are outvoted, by 4 of their 5 others;
    with four of them against four honest, each side outvotes the other and the vote stands down."""
    start = np.zeros(10)
    honest = [start + np.eye(10)[0] + np.eye(10)[i] for i in range(1, 5)]
    colluders = [start - 2 * np.eye(10)[0] + np.eye(10)[i] for i in range(5, 9)]
    rule = dataclasses.replace(GUARDED_RULE, direction_cosine=None, passes=0)
    result = detect(round_of(np.array([*honest, *colluders[:2]]), start=start), History(), rule)
    assert result.reasons == {4: "update at a cosine < -0.3 with 4 of the 5 other updates"} | {
        5: "update at a cosine < -0.3 with 4 of the 5 other updates"
    }
    assert detect(round_of(np.array([*honest, *colluders]), start=start), History(), rule).reasons == {}


def test_the_default_rule_allocates_nothing_matrix_sized():
    """At L x d = 20 x 200,000 (32 MB) a later round of the default rule allocates a few MB (its
    Gram matrix blocks and per-row temporaries), never a copy of the rows it reads."""
    import tracemalloc

    rng = np.random.default_rng(9)
    start = rng.normal(size=200_000)
    models = start + 0.5 * rng.normal(size=start.size) + 0.1 * rng.normal(size=(20, start.size))
    names = [f"t{i}" for i in range(20)]
    history = History()
    history.update(RoundInput(models, names, 1, start), names)
    later = RoundInput(models + 0.01, names, 2, start)
    tracemalloc.start()
    try:
        DETECTORS.get("two_stage_guarded")(later, history)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < models.nbytes / 4


@pytest.mark.parametrize("copies", [0, 1])
def test_the_default_rule_builds_one_gram_matrix_per_round(copies, monkeypatch):
    """Round 1 of the default rule needs pairwise distances twice (the copy check, then m-Krum's
    reference): one Gram matrix serves both, restricted to the rows the copy check kept, and
    the round's matrix is copied only where a row was left out."""
    import fedmarket.algorithms.outliers.base as base

    grams = []
    monkeypatch.setattr(base, "gram", lambda x, centre: grams.append(x) or gram(x, centre))
    rng = np.random.default_rng(6)
    start = rng.normal(0, 1, 50)
    models = start + rng.normal(0, 0.1, (8, 50))
    models[7] = models[6] if copies else models[7]
    result = DETECTORS.get("two_stage_guarded")(round_of(models, round=1, start=start), History())
    assert len(grams) == 1 and grams[0] is models
    assert sorted(result.reasons) == ([6, 7] if copies else [])
    kept = [i for i in range(8) if i not in result.reasons]
    subset = round_of(models, round=1, start=start).subset(np.array(kept))
    np.testing.assert_allclose(subset.sq_distances, pairwise_sq_distances(models[kept]), rtol=1e-12)


@given(
    st.permutations(list(range(6))),
    st.sampled_from(["two_stage", "two_stage_iterated", "two_stage_guarded", "krum", "multi_krum"]),
)
@settings(max_examples=40, deadline=None)
def test_detectors_are_permutation_invariant(order, rule):
    rng = np.random.default_rng(3)
    start, models = honest_round(rng, n=6)
    models[2] = start - (models[2] - start)
    base = {names(6)[i] for i in DETECTORS.get(rule)(round_of(models, start=start), History()).kept}
    permuted = RoundInput(models[order], [names(6)[i] for i in order], 1, start)
    assert {permuted.trainers[i] for i in DETECTORS.get(rule)(permuted, History()).kept} == base


def _direct_sq_distances(x: np.ndarray) -> np.ndarray:
    return np.array([[float((a - b) @ (a - b)) for b in x] for a in x])


@settings(max_examples=60, deadline=None)
@given(exponent=st.floats(-6, 3), d=st.sampled_from([8, 650]), seed=st.integers(0, 2**16))
def test_distances_stay_exact_for_any_accepted_magnitude(exponent, d, seed):
    """Honest models close together, one row of magnitude 10^exponent up to the largest entry a
    task accepts, and a copy of it: every pairwise distance to float64's relative accuracy, the
    copy's exactly 0 (the Gram form centred on the mean lost the honest ones to cancellation)."""
    rng = np.random.default_rng(seed)
    honest = rng.normal(0, 0.3, size=d) + rng.normal(0, 0.05, size=(6, d))
    attacker = rng.normal(0, 1, size=d) * 10.0**exponent
    x = np.vstack([honest, attacker, attacker])
    got, want = pairwise_sq_distances(x), _direct_sq_distances(x)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)
    assert got[6, 7] == 0.0


@pytest.mark.parametrize("magnitude", [1e3, 1e8, 1e30])
def test_one_huge_update_does_not_blind_the_default_detector(magnitude):
    """A trainer whose entries are finite but enormous is flagged, and every honest trainer kept:
    at 1e8 it used to make every honest model a "copy" of every other, leaving it alone kept."""
    rng = np.random.default_rng(5)
    start = rng.normal(0, 0.3, size=650)
    models = start + rng.normal(0, 0.05, size=(8, 650))
    models[3] = rng.normal(0, 1, size=650) * magnitude
    trainers = [f"t{i}" for i in range(8)]
    result = DETECTORS.get("two_stage_guarded")(RoundInput(models, trainers, 1, start), History())
    assert result.kept == [0, 1, 2, 4, 5, 6, 7]


def _vm_flags(array: np.ndarray) -> list[str]:
    """The kernel's VmFlags of the mapping that holds the middle of `array` (/proc/self/smaps;
    numpy advises only the whole huge pages inside an array, which splits its mapping)."""
    address, mapping = array.__array_interface__["data"][0] + array.nbytes // 2, None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                low, high = (int(part, 16) for part in head.split("-"))
                mapping = low <= address < high
            elif mapping and head == "VmFlags:":
                return line.split()[1:]
    raise AssertionError("no mapping holds the array")


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux: reads the kernel's mappings")
def test_a_rounds_matrix_is_zeroed_and_never_advised_huge_pages():
    """numpy advises huge pages on a large array (with THP defrag "madvise", its first touch may
    compact memory for seconds); the round's matrix comes without that advice."""
    matrix = fresh_array((64, 1 << 16))
    assert matrix.shape == (64, 1 << 16) and matrix.dtype == np.float64 and matrix.flags.writeable
    assert not matrix.any()
    matrix[3, 5] = 1.5
    assert matrix.sum() == 1.5 and "hg" not in _vm_flags(matrix)
    if os.environ.get("NUMPY_MADVISE_HUGEPAGE", "1") != "0":
        assert "hg" in _vm_flags(np.empty((64, 1 << 16)))  # what numpy's own allocation gets


@pytest.mark.parametrize("centre", [np.zeros(2), np.array([1.0, 1.0])])
def test_distances_to_the_reference_mean_from_a_gram_about_any_centre(centre):
    # the rows and reference of test_row_statistics_exact: mean (0.5, 1)
    models = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    assert sq_distances_to_mean(gram(models, centre), np.array([1, 2])).tolist() == [15.25, 1.25, 1.25]


def test_a_gram_over_many_column_blocks_is_the_direct_product_and_restores_blas_threads():
    """Wide enough that the blocks are shared between threads (each running BLAS on one)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from fedmarket.algorithms.linalg import BLOCK_COLUMNS

    rng = np.random.default_rng(7)
    x = rng.normal(size=(5, 5 * BLOCK_COLUMNS + 17))
    centre = rng.normal(size=x.shape[1])
    with threadpool_limits(limits=2):  # not 1, which the tests' OMP_NUM_THREADS sets, nor gram's
        threads = [info["num_threads"] for info in threadpool_info()]
        assert set(threads) == {2}
        np.testing.assert_allclose(gram(x, centre), (x - centre) @ (x - centre).T, rtol=1e-12)
        assert [info["num_threads"] for info in threadpool_info()] == threads


def test_the_round_input_has_each_update_norm_and_every_distance_from_one_gram():
    start = np.array([1.0, 1.0])
    models = np.array([[4.0, 5.0], [1.0, 1.0], [1.0, 3.0]])
    round = round_of(models, start=start)
    assert round.sq_updates.tolist() == [25.0, 0.0, 4.0]
    assert round.sq_distances.tolist() == [[0.0, 25.0, 13.0], [25.0, 0.0, 4.0], [13.0, 4.0, 0.0]]
    kept = round.subset(np.array([0, 2]))
    assert kept.sq_updates.tolist() == [25.0, 4.0] and kept.sq_distances.tolist() == [[0.0, 13.0], [13.0, 0.0]]
