"""Exact Shapley value per round (Shapley 1953; for data, Ghorbani and Zou, ICML 2019): with v(S)
the accuracy of the average of S's models and v(empty) that of the round's start model,

    phi_i = sum over S not containing i of |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S)).

All 2^n coalitions are evaluated once each, so it is limited to `MAX_TRAINERS` per round; it is
the reference the approximations (RLOO, GTG-Shapley) are compared with. Normalised per round and
summed like RLOO.
"""

from __future__ import annotations

from math import factorial

import numpy as np

from fedmarket.algorithms.contribution.base import METRICS, CoalitionValue, RoundModels, Utility, per_round_report
from fedmarket.errors import ConfigError
from fedmarket_schemas.settlement import ContributionReport

MAX_TRAINERS = 12


def exact_shapley(n: int, value: CoalitionValue) -> np.ndarray:
    if n > MAX_TRAINERS:
        raise ConfigError(f"exact Shapley over {n} trainers needs 2^{n} evaluations; the limit is {MAX_TRAINERS}")
    values = np.array([value(i for i in range(n) if mask >> i & 1) for mask in range(1 << n)])
    sizes = np.array([bin(mask).count("1") for mask in range(1 << n)])
    weight = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)])
    phi = np.zeros(n)
    for i in range(n):
        without = np.array([mask for mask in range(1 << n) if not mask >> i & 1])
        phi[i] = float(np.sum(weight[sizes[without]] * (values[without | (1 << i)] - values[without])))
    return phi


@METRICS.register("shapley")
def shapley(rounds: list[RoundModels], utility: Utility, seed: int) -> ContributionReport:
    return per_round_report("shapley", rounds, utility, lambda rm, value: exact_shapley(len(rm.trainers), value))
