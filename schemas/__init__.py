"""Pydantic v2 models exchanged between fedmarket's tasks and flows, stored in the content store
and shown in the Prefect UI. Imports nothing of fedmarket's."""

from fedmarket_schemas.market import (
    DataSchema,
    MarketSpec,
    ModelConfig,
    ModelKind,
    RewardSchedule,
    TaskSpec,
    TrainingConfig,
    UpdateBounds,
)
from fedmarket_schemas.rounds import LocalModels, OutlierReport, RoundReport, Submission
from fedmarket_schemas.settlement import ContributionReport, Payout, SettlementReport
from fedmarket_schemas.trainer import CheckResult, DataValidationSummary, Registration

__all__ = [
    "CheckResult",
    "ContributionReport",
    "DataSchema",
    "DataValidationSummary",
    "LocalModels",
    "MarketSpec",
    "ModelConfig",
    "ModelKind",
    "OutlierReport",
    "Payout",
    "Registration",
    "RewardSchedule",
    "RoundReport",
    "SettlementReport",
    "Submission",
    "TaskSpec",
    "TrainingConfig",
    "UpdateBounds",
]
