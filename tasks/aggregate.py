"""Aggregation and evaluation steps."""

from __future__ import annotations

import numpy as np

from fedmarket.algorithms.aggregators import AGGREGATORS
from fedmarket.ml.data import Dataset
from fedmarket.ml.training import accuracy
from fedmarket_schemas.market import ModelConfig
from fedmarket_schemas.rounds import LocalModels, OutlierReport
from fedmarket_tasks.cache import round_step
from fedmarket_tasks.common import once_task


@round_step(task_run_name="aggregate-r{models.round}")
def aggregate(models: LocalModels, report: OutlierReport, rule: str, fallback: np.ndarray, *, key: str) -> np.ndarray:
    """Aggregate the kept models; with none kept the global model stays as it was. The round's
    matrix is copied only where some of its rows are left out."""
    keep = [i for i, t in enumerate(models.trainers) if t in set(report.kept)]
    if not keep:
        return fallback.copy()
    return AGGREGATORS.get(rule)(models.matrix if len(keep) == len(models.trainers) else models.matrix[keep])


@round_step(task_run_name="evaluate")
def evaluate(vector: np.ndarray, data: Dataset, model: ModelConfig, *, key: str) -> float:
    """The round's validation accuracy, cached with the round's other steps."""
    return accuracy(vector, data, model)


@once_task(task_run_name="accuracy")
def accuracy_of(vector: np.ndarray, data: Dataset, model: ModelConfig) -> float:
    return accuracy(vector, data, model)
