"""Leave-one-out (Cook, "Detection of Influential Observation in Linear Regression",
Technometrics 1977; in data valuation, Jia et al., AISTATS 2019): per round,
C_i(t) = v(N) - v(N \\ {i}), with v(S) the accuracy of the average of S's models. N + 1
evaluations a round. sources/004 section III.A presents RLOO as its cheaper randomized form.
Normalised per round and summed like RLOO (fedmarket/algorithms/contribution/rloo.py)."""

from __future__ import annotations

import numpy as np

from fedmarket.algorithms.contribution.base import METRICS, CoalitionValue, RoundModels, Utility, per_round_report
from fedmarket_schemas.settlement import ContributionReport


@METRICS.register("loo")
def loo(rounds: list[RoundModels], utility: Utility, seed: int) -> ContributionReport:
    def raw(rm: RoundModels, value: CoalitionValue) -> np.ndarray:
        everyone = frozenset(range(len(rm.trainers)))
        return np.array([value(everyone) - value(everyone - {i}) for i in range(len(rm.trainers))])

    return per_round_report("loo", rounds, utility, raw)
