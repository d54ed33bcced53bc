"""Aggregation rules: one module each, one signature (`Aggregator`), registered by name."""

from tasks.aggregators.base import AGGREGATORS, Aggregator, assumed_byzantine
from tasks.aggregators import mean, median, trimmed_mean  # noqa: F401  (registration)

__all__ = ["AGGREGATORS", "Aggregator", "assumed_byzantine"]
