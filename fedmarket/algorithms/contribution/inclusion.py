"""Inclusion: each round's benign trainers share that round equally, summed over rounds.

Not in sources/004, which values each trainer's model (RLOO). Under secure aggregation
(fedmarket/secagg) no one sees a single model, only the survivors' sum, so no coalition other
than the whole round can be valued; what the chain fixes is who survived each round. A trainer
is paid by how many rounds its masked update was counted in, each round normalised like RLOO's
(per_round_report), so a round of n survivors gives each 1/n. No evaluation is made."""

from __future__ import annotations

import numpy as np

from fedmarket.algorithms.contribution.base import METRICS, CoalitionValue, RoundModels, Utility, per_round_report
from fedmarket_schemas.settlement import ContributionReport


@METRICS.register("inclusion")
def inclusion(rounds: list[RoundModels], utility: Utility, seed: int) -> ContributionReport:
    def raw(rm: RoundModels, value: CoalitionValue) -> np.ndarray:
        return np.ones(len(rm.trainers))

    return per_round_report("inclusion", rounds, utility, raw)


def of_masks(masks: list[int], trainers: list[str]) -> ContributionReport:
    """Inclusion over rounds whose benign masks (bit i: `trainers[i]`) are `masks`, in order."""
    rounds = []
    for r, mask in enumerate(masks, start=1):
        counted = [t for i, t in enumerate(trainers) if mask >> i & 1]
        rounds.append(RoundModels(r, counted, np.empty((len(counted), 0)), np.empty(0)))
    return inclusion(rounds, lambda _: 0.0, 0)
