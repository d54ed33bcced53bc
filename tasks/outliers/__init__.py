"""Outlier rules: one module each, one signature (`Detector`), registered by name."""

from tasks.outliers.base import DETECTORS, Detection, Detector, History
from tasks.outliers import krum, two_stage  # noqa: F401  (registration)

__all__ = ["DETECTORS", "Detection", "Detector", "History"]
