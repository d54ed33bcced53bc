"""Contribution metrics: one module each, one signature (`Metric`), registered by name."""

from fedmarket.algorithms.contribution import gtg, loo, rloo, shapley  # noqa: F401  (registration)
from fedmarket.algorithms.contribution.base import METRICS, CoalitionValue, RoundModels

__all__ = ["METRICS", "CoalitionValue", "RoundModels"]
