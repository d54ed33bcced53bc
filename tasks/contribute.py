"""Contribution step: the task's registered metric (default `update_loo`; sources/004's RLOO
as `rloo`) over the benign models of every round, valued on the test set by the utility the
metric names (accuracy, or the log-likelihood)."""

from __future__ import annotations

from fedmarket.algorithms.contribution import METRICS, RoundModels, utility_of
from fedmarket.ml.data import Dataset
from fedmarket.ml.training import Scorer
from fedmarket_schemas.market import ModelConfig
from fedmarket_schemas.settlement import ContributionReport
from fedmarket_tasks.common import once_task


@once_task(task_run_name="contributions-{metric}")
def assess_contributions(
    rounds: list[RoundModels], test: Dataset, model: ModelConfig, metric: str, seed: int
) -> ContributionReport:
    scorer = Scorer(test, model)
    value = {"accuracy": scorer.accuracy, "log_likelihood": scorer.log_likelihood}[utility_of(metric)]
    return METRICS.get(metric)(rounds, value, seed)
