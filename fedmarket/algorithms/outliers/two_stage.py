"""Two-stage outlier detection of the proof-of-contribution data market (sources/004, section
III.B and Algorithm 1).

Stage 1, cross-round check: cosine similarity of each trainer's local model with its own model of
the previous round; any score below `threshold` (0.3, section V.B) means an attack happened.

Stage 2, cross-trainer check (Algorithm 1), run in round 1 and whenever stage 1 fires: distances
s_i = ||w_i - w_avg||, with w_avg the m-Krum average (m = L/2) in round 1 and the average of the
trainers kept in the previous round afterwards; fit N(mu, sigma) to the scores (sample sigma) and
remove every model with s_i > mu + sigma.

`two_stage` is the paper's rule as written. Its only additions cover cases the paper leaves open:
when no trainer of this round was kept in the previous one, w_avg falls back to the m-Krum
average; with fewer than 3 models stage 2 cannot fit sigma and keeps everyone.

`two_stage_iterated` departs from the paper on purpose (README, "Outlier detection"):
- a trainer that fails stage 1 is removed, and left out of w_avg, instead of only being the
  trigger: a model that turned away from its own previous one is what the check is built to catch;
- the mu + sigma fit is repeated (up to 3 passes) on the kept models while the previous pass
  removed something, because one far outlier (a boosted update) inflates sigma and masks nearer
  ones (a sign-flipped update). A repeat pass removes a model only if it is also more than 1.5x the
  median kept score, so one tight cluster of honest models is never eroded.

`two_stage_guarded` (the market's default, after the replay check of guarded.py) also:
- runs stage 2 every round and guards its first pass too;
- fails a trainer in stage 1 only if its cosine is also under half the round's median: with an
  honest majority the median is an honest trainer's; under DP-SGD honest models drift with the
  noise, all below the paper's 0.3, while without DP the median is near 1 and the paper's
  threshold binds as before;
- removes an update outvoted by the others: at a cosine under -0.3 with more than half of the
  other active updates, unless half of the active ones or more are (two camps). One vote per
  trainer, whatever its norm: colluders who push against the honest update (Shejwalkar and
  Houmansadr's AGR-tailored attack, NDSS 2021) can outweigh an honest majority in a reference
  average by scaling their push, not in a vote;
- then removes an update pointing away from the reference's (cosine under -0.2), unless half of the
  active ones or more do (then the reference itself was captured): a sign flip or a min-max
  colluder can sit within the distance guard, not on the honest side;
- widens the guard where the round's honest spread is wide: a model goes only beyond both 1.5x
  the median distance and the median plus 2.5 scaled MADs (1.4826 MAD estimates sigma), so small
  shares, whose honest models lie far apart, are not eroded pass after pass, while a tight round
  keeps the 1.5x guard.

Cost: after round 1 the rule makes one fused pass over the models (norms, cosines and distances
together, fedmarket/algorithms/linalg.row_statistics); round 1 builds one Gram matrix for m-Krum.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from fedmarket.algorithms.linalg import row_statistics, sq_distances_to_mean, update_cosines
from fedmarket.algorithms.outliers.base import DETECTORS, Detection, History, RoundInput
from fedmarket.algorithms.outliers.krum import multi_krum_select

PAPER_THRESHOLD = 0.3


@dataclass(frozen=True)
class TwoStageRule:
    threshold: float = PAPER_THRESHOLD
    boundary_sigmas: float = 1.0
    passes: int = 1
    masking_ratio: float = 1.5
    remove_cross_round_failures: bool = False
    every_round: bool = False  # run stage 2 even when stage 1 saw no attack
    guard_first_pass: bool = False  # apply the masking-ratio guard on the first pass too
    median_cosine_ratio: float | None = None  # stage 1 fails a trainer only below this x the median too
    direction_cosine: float | None = None  # remove updates at a cosine below this to the reference's
    spread_guard: float | None = None  # the guard is also at least median + this x 1.4826 MAD
    vote_cosine: float | None = None  # remove updates below this cosine with most other active ones


def reference_size(n: int) -> int:
    """m of the m-Krum average, the paper's L / 2 (at least 1) over the n models of the round."""
    return max(1, n // 2)


def reference_rows(round: RoundInput, history: History, exclude: set[int]) -> np.ndarray:
    """Rows whose mean is w_avg: previous round's kept trainers, else the m-Krum selection."""
    previous_benign = [i for i, t in enumerate(round.trainers) if t in history.last_kept and i not in exclude]
    if round.round > 1 and previous_benign:
        return np.array(previous_benign, dtype=np.int64)
    return multi_krum_select(round.models, m=reference_size(round.size), sq_distances=round.sq_distances)


def detect(round: RoundInput, history: History, rule: TwoStageRule) -> Detection:
    models, n = np.asarray(round.models, dtype=np.float64), round.size
    previous_rows = history.rows_for(round.trainers) if round.round > 1 else np.full(n, -1)
    reference = reference_rows(round, history, exclude=set())
    cross_round: dict[int, float] = {}
    if round.round > 1:
        stats = row_statistics(models, history.last_models, previous_rows, reference)
        cosines, sq_distances = stats.cosines(), stats.sq_distances
        cross_round = {int(i): float(cosines[i]) for i in np.flatnonzero(previous_rows >= 0)}
    else:  # round 1: the m-Krum reference built the round's Gram matrix, which has every distance
        sq_distances = sq_distances_to_mean(round.update_gram, reference)
    threshold = rule.threshold
    if rule.median_cosine_ratio is not None and cross_round:
        threshold = min(threshold, rule.median_cosine_ratio * float(np.median(list(cross_round.values()))))
    failed = {i for i, score in cross_round.items() if score < threshold}
    triggered = bool(failed) or round.round <= 1 or not cross_round
    run_stage_two = triggered or rule.every_round

    reasons: dict[int, str] = {}
    if rule.remove_cross_round_failures:
        reasons = {i: f"cross-round cosine {cross_round[i]:.3f} < {threshold:.3g}" for i in sorted(failed)}
    if rule.vote_cosine is not None and n >= 3:
        reasons.update(_outvoted(round, reasons, rule.vote_cosine))
    if rule.direction_cosine is not None and n >= 3:
        reasons.update(_pointing_away(round, reference, reasons, rule.direction_cosine))
    if round.round > 1 and reasons and set(reference.tolist()) & set(reasons):
        # the reference must not average in the models just removed: one more pass (round 1's
        # m-Krum reference is the round's own choice, and stays)
        reference = reference_rows(round, history, exclude=set(reasons))
        sq_distances = row_statistics(models, None, previous_rows, reference).sq_distances

    scores: dict[int, float] = {}
    boundary: float | None = None
    if run_stage_two and n >= 3:
        distances = np.sqrt(sq_distances)
        scores = {i: float(d) for i, d in enumerate(distances)}
        boundary = _remove_beyond_boundary(distances, reasons, rule)
    return Detection.keeping(
        n,
        reasons,
        cross_round_scores=cross_round,
        cross_round_triggered=triggered,
        cross_trainer_scores=scores,
        boundary=boundary,
    )


def _outvoted(round: RoundInput, reasons: dict[int, str], limit: float) -> dict[int, str]:
    """Active updates at a cosine below `limit` with more than half of the other active updates
    (where at least 3 are active, and none where half of them or more are: two camps); the inner
    products u_i . u_j are the round's update Gram matrix."""
    active = np.array([i for i in range(round.size) if i not in reasons], dtype=np.int64)
    if len(active) < 3:
        return {}
    inner = round.update_gram[np.ix_(active, active)]
    lengths = np.sqrt(np.diag(inner))
    against = inner < limit * np.outer(lengths, lengths)
    np.fill_diagonal(against, False)
    votes = against.sum(axis=1)
    if 2 * int((2 * votes > len(active) - 1).sum()) >= len(active):
        return {}  # two camps, no majority: the vote stands down
    return {
        int(i): f"update at a cosine < {limit:g} with {votes[k]} of the {len(active) - 1} other updates"
        for k, i in enumerate(active)
        if 2 * votes[k] > len(active) - 1
    }


def _pointing_away(round: RoundInput, reference: np.ndarray, reasons: dict[int, str], limit: float) -> dict[int, str]:
    """Active updates whose cosine to the reference's update is below `limit`; none where half of
    the active updates or more are (the reference would be the captured side)."""
    cosines = update_cosines(round.update_gram, reference)
    active = [i for i in range(round.size) if i not in reasons]
    away = [i for i in active if cosines[i] < limit]
    if 2 * len(away) >= len(active):
        return {}
    return {i: f"update cosine {cosines[i]:.3f} to the reference's < {limit:g}" for i in away}


def _remove_beyond_boundary(distances: np.ndarray, reasons: dict[int, str], rule: TwoStageRule) -> float | None:
    """Algorithm 1's mu + k sigma cut, repeated `rule.passes` times; fills `reasons`."""
    active = np.array([i for i in range(len(distances)) if i not in reasons], dtype=np.int64)
    boundary = None
    for pass_no in range(rule.passes):
        if len(active) < 3:
            break
        d = distances[active]
        mu, sigma = float(d.mean()), float(d.std(ddof=1))
        boundary = mu + rule.boundary_sigmas * sigma
        outside = d > boundary
        if pass_no > 0 or rule.guard_first_pass:
            median = float(np.median(d))
            guard = rule.masking_ratio * median
            if rule.spread_guard is not None:
                guard = max(guard, median + rule.spread_guard * 1.4826 * float(np.median(np.abs(d - median))))
            outside &= d > guard
        for i in active[outside]:
            reasons[int(i)] = (
                f"cross-trainer distance {distances[i]:.4g} > mu + {rule.boundary_sigmas:g} sigma = {boundary:.4g}"
                + (f" (pass {pass_no + 1})" if pass_no else "")
            )
        if not outside.any():
            break
        active = active[~outside]
    return boundary


PAPER_RULE = TwoStageRule()
ITERATED_RULE = TwoStageRule(passes=3, remove_cross_round_failures=True)
GUARDED_RULE = TwoStageRule(
    passes=3,
    remove_cross_round_failures=True,
    every_round=True,
    guard_first_pass=True,
    median_cosine_ratio=0.5,
    direction_cosine=-0.2,
    spread_guard=2.5,
    vote_cosine=-0.3,
)

DETECTORS.register("two_stage")(partial(detect, rule=PAPER_RULE))
DETECTORS.register("two_stage_iterated")(partial(detect, rule=ITERATED_RULE))
