"""Aggregation rules: one module each, one signature (`Aggregator`), registered by name."""

from fedmarket.algorithms.aggregators import mean, median, trimmed_mean  # noqa: F401  (registration)
from fedmarket.algorithms.aggregators.base import AGGREGATORS, Aggregator, assumed_byzantine

__all__ = ["AGGREGATORS", "Aggregator", "assumed_byzantine"]
