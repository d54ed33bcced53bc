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
  models and the seed recomputes the same vector; the settlement proof (issue 5) fixes the seed
  on chain.
- Identical subsets are evaluated once (a cache keyed by the subset); `evaluations` counts real
  evaluations.
"""

from __future__ import annotations

import math

import numpy as np

from schemas.settlement import ContributionReport
from tasks.contribution.base import METRICS, RoundModels, Utility


def subset_size(n: int) -> int:
    return min(n, max(2, math.ceil(math.log2(n)))) if n > 1 else 1


@METRICS.register("rloo")
def rloo(rounds: list[RoundModels], utility: Utility, seed: int) -> ContributionReport:
    per_round: list[dict[str, float]] = []
    totals: dict[str, float] = {}
    evaluations = 0
    for rm in rounds:
        n = len(rm.trainers)
        if n == 0:
            per_round.append({})
            continue
        cache: dict[frozenset[int], float] = {}

        def acc(members: frozenset[int]) -> float:
            nonlocal evaluations
            if members not in cache:
                model = rm.start_model if not members else rm.models[sorted(members)].mean(axis=0)
                cache[members] = utility(model)
                evaluations += 1
            return cache[members]

        size = subset_size(n)
        raw = np.zeros(n)
        for i in range(n):
            rng = np.random.default_rng([seed, rm.round, i])
            others = rng.choice([j for j in range(n) if j != i], size=size - 1, replace=False) if size > 1 else []
            subset = frozenset([i, *map(int, others)])
            raw[i] = acc(subset) - acc(subset - {i})
        scale = float(np.abs(raw).sum())
        normalised = raw / scale if scale > 0 else np.zeros(n)
        row = {t: float(c) for t, c in zip(rm.trainers, normalised)}
        per_round.append(row)
        for t, c in row.items():
            totals[t] = totals.get(t, 0.0) + c
    return ContributionReport(method="rloo", per_round=per_round, total=totals, evaluations=evaluations)
