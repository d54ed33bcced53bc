"""What a trainer publishes when it joins."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CheckResult(BaseModel):
    expectation: str
    column: str | None = None
    success: bool
    unexpected_count: int = 0


class DataValidationSummary(BaseModel):
    """Counts and pass/fail of the task's data expectations; no rows, no values."""

    dataset: str
    rows: int
    success: bool
    checks: list[CheckResult]

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]


class Registration(BaseModel):
    trainer: str
    index: int
    encryption_key: str
    validation_cid: str
    gas_used: int
    tx_hash: str


class PrivacySpent(BaseModel):
    """What a trainer training with DP-SGD has spent in a market, as Opacus's RDP accountant
    counts it over every round it trained in (this one included); reported in its update's
    header, which only the aggregator opens (under secure aggregation, the masked model's
    header, which anyone reads)."""

    epsilon: float = Field(ge=0)
    delta: float = Field(gt=0, lt=1)
    rounds: int = Field(gt=0, description="rounds of this market the trainer trained in, this one included")
