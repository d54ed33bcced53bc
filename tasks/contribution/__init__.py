"""Contribution metrics, registered by name."""

from tasks.contribution.base import METRICS, RoundModels
from tasks.contribution import rloo  # noqa: F401  (registration)

__all__ = ["METRICS", "RoundModels"]
