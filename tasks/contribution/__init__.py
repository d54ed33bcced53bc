"""Contribution metrics: one module each, one signature (`Metric`), registered by name."""

from tasks.contribution.base import METRICS, CoalitionValue, RoundModels
from tasks.contribution import gtg, loo, rloo, shapley  # noqa: F401  (registration)

__all__ = ["METRICS", "CoalitionValue", "RoundModels"]
