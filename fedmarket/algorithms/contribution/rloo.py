"""Randomized leave-one-out (RLOO), sources/004 section III.A, eq. (2).

In round t with N honest trainers, for each honest trainer i: sample a subset S of about log N
honest trainers that contains i, and C_i(t) = Acc(avg(S)) - Acc(avg(S \\ {i})). Contributions are
normalised per round and summed over rounds.

Departures, and why:
- |S| = max(2, ceil(log2 N)), capped at N: the paper says "log N" without a base; a subset of one
  would compare i with nothing.
- avg of the empty set is the round's starting global model (the model that round would have
  kept without updates), which defines C_i(t) when N = 1.
- Per-round normalisation divides by sum_j |C_j(t)| (the paper does not give the norm); it keeps
  signs and is defined when contributions cancel. A round where every C_j(t) = 0 adds nothing.
- Subsets are drawn from a seeded generator (seed, round, trainer index), so anyone holding the
  models and the seed recomputes the same vector; the contract fixes the seed (`rlooSeed`).
- Identical subsets are evaluated once; `evaluations` counts real evaluations.
"""

from __future__ import annotations

import math

import numpy as np

from fedmarket.algorithms.contribution.base import METRICS, CoalitionValue, RoundModels, Utility, per_round_report
from fedmarket_schemas.settlement import ContributionReport


def subset_size(n: int) -> int:
    return min(n, max(2, math.ceil(math.log2(n)))) if n > 1 else 1


def rloo_subset(seed: int, round: int, i: int, n: int) -> frozenset[int]:
    size = subset_size(n)
    rng = np.random.default_rng([seed, round, i])
    others = rng.choice([j for j in range(n) if j != i], size=size - 1, replace=False) if size > 1 else []
    return frozenset([i, *map(int, others)])


@METRICS.register("rloo")
def rloo(rounds: list[RoundModels], utility: Utility, seed: int) -> ContributionReport:
    def raw(rm: RoundModels, value: CoalitionValue) -> np.ndarray:
        n = len(rm.trainers)
        subsets = [rloo_subset(seed, rm.round, i, n) for i in range(n)]
        return np.array([value(s) - value(s - {i}) for i, s in enumerate(subsets)])

    return per_round_report("rloo", rounds, utility, raw)
