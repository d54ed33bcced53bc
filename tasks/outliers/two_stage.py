"""Two-stage outlier detection of the proof-of-contribution data market (sources/004, section
III.B and Algorithm 1).

Stage 1, cross-round check: cosine similarity of each trainer's local model with its own model of
the previous round; a score below `threshold` (0.3 in the paper, section V.B) means an attack
happened this round.

Stage 2, cross-trainer check: distances s_i = ||w_i - w_avg||, with w_avg the m-Krum average
(m = L/2) in the first round and the average of the trainers kept in the previous round after it;
fit N(mu, sigma) to the scores (sample sigma) and remove every model with s_i > mu + k * sigma.

Departures from the paper, and why:
- Stage 2 also runs in round 1, where stage 1 has no previous model to compare with; the paper's
  Algorithm 1 does the same (its round-1 branch uses m-Krum).
- A trainer that fails stage 1 is removed as well as being the trigger: the paper only uses the
  score to decide whether stage 2 runs, but a model that turned away from its own previous one
  is exactly what the check is built to catch.
- `boundary_sigmas` (k) is 1 by default, as in the paper.
- `rounds_of_removal`: the paper removes once. A far outlier (a boosted update) inflates sigma
  and masks nearer ones (a sign-flipped update); with `rounds_of_removal` > 1 the fit is repeated
  on the kept models while the previous pass removed something, and a repeat pass removes a model
  only if it is also more than `masking_ratio` (1.5) times the median kept score, so one tight
  cluster of honest models is never eroded. `two_stage` is the paper's single pass; `two_stage_iterated` is the default of the
  market demo (see README, "Outlier detection").
"""

from __future__ import annotations

from functools import partial

import numpy as np

from tasks.linalg import cosine
from tasks.outliers.base import DETECTORS, Detection, History
from tasks.outliers.krum import multi_krum_average

PAPER_THRESHOLD = 0.3


def cross_round_scores(models: np.ndarray, trainers: list[str], history: History) -> dict[int, float]:
    return {
        i: cosine(models[i], history.last_models[t]) for i, t in enumerate(trainers) if t in history.last_models
    }


def reference_model(models: np.ndarray, trainers: list[str], round: int, history: History, exclude: set[int]) -> np.ndarray:
    previous_benign = [i for i, t in enumerate(trainers) if t in history.last_kept and i not in exclude]
    if round <= 1 or not previous_benign:
        return multi_krum_average(models, m=max(1, models.shape[0] // 2))
    return models[previous_benign].mean(axis=0)


def detect(
    models: np.ndarray,
    trainers: list[str],
    round: int,
    history: History,
    *,
    threshold: float = PAPER_THRESHOLD,
    boundary_sigmas: float = 1.0,
    rounds_of_removal: int = 1,
    masking_ratio: float = 1.5,
) -> Detection:
    models = np.asarray(models, dtype=np.float64)
    n = models.shape[0]
    reasons: dict[int, str] = {}

    cr = cross_round_scores(models, trainers, history)
    for i, score in cr.items():
        if score < threshold:
            reasons[i] = f"cross-round cosine {score:.3f} < {threshold}"
    triggered = bool(reasons) or round <= 1 or not cr

    scores: dict[int, float] = {}
    boundary: float | None = None
    if triggered and n >= 3:
        w_avg = reference_model(models, trainers, round, history, exclude=set(reasons))
        distances = np.linalg.norm(models - w_avg, axis=1)
        scores = {i: float(d) for i, d in enumerate(distances)}
        active = np.array([i for i in range(n) if i not in reasons])
        for pass_no in range(rounds_of_removal):
            if len(active) < 3:
                break
            d = distances[active]
            mu, sigma = float(d.mean()), float(d.std(ddof=1))
            boundary = mu + boundary_sigmas * sigma
            outside = d > boundary
            if pass_no > 0:
                # a repeat pass removes only models clearly apart from the bulk, so it never
                # erodes one tight cluster of honest models
                outside &= d > masking_ratio * float(np.median(d))
            for i in active[outside]:
                reasons[int(i)] = (
                    f"cross-trainer distance {distances[i]:.4g} > mu + {boundary_sigmas:g} sigma = {boundary:.4g}"
                    + (f" (pass {pass_no + 1})" if pass_no else "")
                )
            if not outside.any():
                break
            active = active[~outside]

    kept = [i for i in range(n) if i not in reasons]
    return Detection(
        kept=kept,
        reasons=reasons,
        cross_round_scores=cr,
        cross_round_triggered=triggered,
        cross_trainer_scores=scores,
        boundary=boundary,
    )


DETECTORS.register("two_stage")(partial(detect, rounds_of_removal=1))
DETECTORS.register("two_stage_iterated")(partial(detect, rounds_of_removal=3))
