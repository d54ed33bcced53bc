"""Outlier rules: one module each, one signature (`Detector`), registered by name."""

from tasks.outliers.base import DETECTORS, Detection, Detector, History, RoundInput
from tasks.outliers import guarded, krum, replay, two_stage  # noqa: F401  (registration)

DEFAULT_DETECTOR = "two_stage_guarded"

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "Detection", "Detector", "History", "RoundInput"]
