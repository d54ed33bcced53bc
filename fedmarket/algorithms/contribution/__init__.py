"""Contribution metrics: one module each, one signature (`Metric`), registered by name."""

from fedmarket.algorithms.contribution import (  # noqa: F401  (registration)
    gtg,
    inclusion,
    loo,
    rloo,
    shapley,
    update_loo,
    update_shapley,
)
from fedmarket.algorithms.contribution.base import (
    METRICS,
    ONCHAIN_SCALE,
    CoalitionValue,
    RoundModels,
    to_onchain,
    utility_of,
)

DEFAULT_METRIC = "update_loo"
# what a proven settlement measures: the settlement circuit's RLOO on correct counts, one proof per
# round, summed on chain (fedmarket/zk/settlement_circuit.py); computed by the circuit, not
# registered as a float metric
PROVEN_CONTRIBUTION = "rloo_round_counts"

__all__ = [
    "DEFAULT_METRIC",
    "METRICS",
    "ONCHAIN_SCALE",
    "PROVEN_CONTRIBUTION",
    "CoalitionValue",
    "RoundModels",
    "to_onchain",
    "utility_of",
]
