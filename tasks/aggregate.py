"""Aggregation and evaluation steps."""

from __future__ import annotations

import numpy as np

from fedmarket.ml.data import Dataset
from fedmarket.ml.training import accuracy
from schemas.market import ModelConfig
from schemas.rounds import LocalModels, OutlierReport
from tasks.aggregators import AGGREGATORS
from tasks.common import compute_step


@compute_step(task_run_name="aggregate-r{models.round}")
def aggregate(models: LocalModels, report: OutlierReport, rule: str, fallback: np.ndarray, key: str = "") -> np.ndarray:
    """Aggregate the kept models; with none kept the global model stays as it was."""
    keep = [i for i, t in enumerate(models.trainers) if t in set(report.kept)]
    if not keep:
        return fallback.copy()
    return AGGREGATORS.get(rule)(models.matrix[keep])


@compute_step(task_run_name="evaluate")
def evaluate(vector: np.ndarray, data: Dataset, model: ModelConfig, key: str = "") -> float:
    return accuracy(vector, data, model)
