"""GTG-Shapley (Liu et al., "GTG-Shapley: Efficient and Accurate Participant Contribution
Evaluation in Federated Learning", ACM TIST 2022), the baseline sources/004 compares RLOO with.

Per round, Monte Carlo over permutations of the trainers with the paper's three devices:
- between-round truncation: if |v(N) - v(empty)| < `round_tolerance` the round gets no value;
- within-round truncation: once |v(N) - v(prefix)| < `prefix_tolerance`, the remaining marginal
  gains of that permutation are taken as 0 without evaluating them;
- guided sampling: permutation k starts with trainer k mod n, so every trainer is first equally
  often, and the rest is shuffled.
Sampling stops when the mean relative change of the estimates over the last n permutations is
below `convergence` (after at least 2n permutations), or after `max_permutations_per_trainer` x n.

Departures: tolerances are absolute accuracies (0.001 / 0.001) because v is an accuracy; the
permutation order comes from a seeded generator so the result is reproducible; normalised per
round and summed like RLOO.
"""

from __future__ import annotations

import numpy as np

from fedmarket.algorithms.contribution.base import METRICS, CoalitionValue, RoundModels, Utility, per_round_report
from fedmarket_schemas.settlement import ContributionReport

ROUND_TOLERANCE = 1e-3
PREFIX_TOLERANCE = 1e-3
CONVERGENCE = 0.05
MAX_PERMUTATIONS_PER_TRAINER = 20


def gtg_shapley(n: int, value: CoalitionValue, rng: np.random.Generator) -> np.ndarray:
    everyone = frozenset(range(n))
    v_all, v_empty = value(everyone), value(())
    if abs(v_all - v_empty) < ROUND_TOLERANCE:
        return np.zeros(n)
    total = np.zeros(n)
    history: list[np.ndarray] = []
    for k in range(MAX_PERMUTATIONS_PER_TRAINER * n):
        first = k % n
        order = [first, *rng.permutation([j for j in range(n) if j != first]).tolist()]
        prefix: frozenset[int] = frozenset()
        previous = v_empty
        for j in order:
            if abs(v_all - previous) < PREFIX_TOLERANCE:
                break  # within-round truncation: the rest add nothing measurable
            prefix = prefix | {j}
            current = value(prefix)
            total[j] += current - previous
            previous = current
        history.append(total / (k + 1))
        if k + 1 >= 2 * n and _converged(history, n):
            break
    return history[-1]


def _converged(history: list[np.ndarray], n: int) -> bool:
    latest, earlier = history[-1], history[-1 - n]
    scale = np.maximum(np.abs(latest), 1e-12)
    return float(np.mean(np.abs(latest - earlier) / scale)) < CONVERGENCE


@METRICS.register("gtg_shapley")
def gtg(rounds: list[RoundModels], utility: Utility, seed: int) -> ContributionReport:
    def raw(rm: RoundModels, value: CoalitionValue) -> np.ndarray:
        return gtg_shapley(len(rm.trainers), value, np.random.default_rng([seed, rm.round]))

    return per_round_report("gtg_shapley", rounds, utility, raw)
