"""What `fedmarket audit` finds: one row per check, and whether the market passed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["pass", "fail", "trusted"]


class AuditCheck(BaseModel):
    name: str
    status: Status = Field(description="trusted: the chain and the store cannot tell; it is the aggregator's word")
    detail: str


class AuditReport(BaseModel):
    market: str
    phase: str
    checks: list[AuditCheck]

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def failures(self) -> list[AuditCheck]:
        return [c for c in self.checks if c.status == "fail"]
