"""What a trainer publishes when it joins."""

from __future__ import annotations

from pydantic import BaseModel


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
