"""The signature every contribution metric has, and what they share: the value of a coalition of
one round's trainers (the utility of their average model, memoised and counted) and the
per-round normalisation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from fedmarket.algorithms.registry import Registry
from fedmarket_schemas.settlement import ContributionReport


@dataclass(frozen=True)
class RoundModels:
    """The benign local models of one round and the global model the round started from."""

    round: int
    trainers: list[str]
    models: np.ndarray
    start_model: np.ndarray


ONCHAIN_SCALE = 10**6  # contributions go on chain as integers with six decimals


def to_onchain(report: ContributionReport, trainers: list[str]) -> list[int]:
    """One integer per registered trainer, in registration order; absent trainers get 0."""
    return [int(round(report.total.get(t, 0.0) * ONCHAIN_SCALE)) for t in trainers]


Utility = Callable[[np.ndarray], float]  # model vector -> its value on the test set
Metric = Callable[[list[RoundModels], Utility, int], ContributionReport]
METRICS: Registry[Metric] = Registry("contribution metric")


def utility_of(metric: str) -> str:
    """What `metric` values a coalition's model by: "accuracy" (the paper's), unless the metric
    says otherwise in its `utility` attribute ("log_likelihood")."""
    return getattr(METRICS.get(metric), "utility", "accuracy")


class CoalitionValue:
    """v(S) = utility(average of the models in S), v(empty) = utility(start model): the model the
    round would have produced without those trainers. Each distinct S is evaluated once;
    `evaluations` counts real evaluations, the cost the benchmark reports."""

    def __init__(self, round: RoundModels, utility: Utility):
        self.round, self.utility = round, utility
        self.cache: dict[frozenset[int], float] = {}
        self.evaluations = 0

    def __call__(self, members: Iterable[int]) -> float:
        key = frozenset(members)
        if key not in self.cache:
            model = self.round.start_model if not key else self.round.models[sorted(key)].mean(axis=0)
            self.cache[key] = float(self.utility(model))
            self.evaluations += 1
        return self.cache[key]


def normalise(raw: np.ndarray) -> np.ndarray:
    """Divide by sum_j |C_j| (keeps signs; defined when contributions cancel); all-zero stays 0."""
    scale = float(np.abs(raw).sum())
    return raw / scale if scale > 0 else np.zeros_like(raw)


def per_round_report(
    method: str,
    rounds: list[RoundModels],
    utility: Utility,
    raw_of: Callable[[RoundModels, CoalitionValue], np.ndarray],
) -> ContributionReport:
    """Run `raw_of` on every round, normalise each round, sum over rounds."""
    per_round: list[dict[str, float]] = []
    totals: dict[str, float] = {}
    evaluations = 0
    for rm in rounds:
        if not rm.trainers:
            per_round.append({})
            continue
        value = CoalitionValue(rm, utility)
        row = {t: float(c) for t, c in zip(rm.trainers, normalise(raw_of(rm, value)))}
        evaluations += value.evaluations
        per_round.append(row)
        for t, c in row.items():
            totals[t] = totals.get(t, 0.0) + c
    return ContributionReport(method=method, per_round=per_round, total=totals, evaluations=evaluations)
