"""Contribution step: the task's registered metric (default RLOO, sources/004 eq. (2)) over the
benign models of every round, with test-set accuracy as the utility."""

from __future__ import annotations

from fedmarket.algorithms.contribution import METRICS, RoundModels
from fedmarket.ml.data import Dataset
from fedmarket.ml.training import accuracy
from fedmarket_schemas.market import ModelConfig
from fedmarket_schemas.settlement import ContributionReport
from fedmarket_tasks.common import once_task

ONCHAIN_SCALE = 10**6  # contributions go on chain as integers with six decimals


@once_task(task_run_name="contributions-{metric}")
def assess_contributions(
    rounds: list[RoundModels], test: Dataset, model: ModelConfig, metric: str, seed: int
) -> ContributionReport:
    return METRICS.get(metric)(rounds, lambda vector: accuracy(vector, test, model), seed)


def to_onchain(report: ContributionReport, trainers: list[str]) -> list[int]:
    """One integer per registered trainer, in registration order; absent trainers get 0."""
    return [int(round(report.total.get(t, 0.0) * ONCHAIN_SCALE)) for t in trainers]
