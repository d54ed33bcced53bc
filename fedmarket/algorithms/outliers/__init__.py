"""Outlier rules: one module each, one signature (`Detector`), registered by name."""

from fedmarket.algorithms.outliers import guarded, krum, proven, replay, two_stage  # noqa: F401  (registration)
from fedmarket.algorithms.outliers.base import DETECTORS, Detection, Detector, History, RoundInput
from fedmarket.algorithms.outliers.proven import PROVEN_DETECTOR

DEFAULT_DETECTOR = "two_stage_guarded"
# the rules a round circuit proves: a market with a round verifier must name one of them
PROVABLE_DETECTORS = frozenset({PROVEN_DETECTOR})

__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "PROVABLE_DETECTORS",
    "PROVEN_DETECTOR",
    "Detection",
    "Detector",
    "History",
    "RoundInput",
]
