"""Contributions, payouts and the settlement report."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ContributionReport(BaseModel):
    method: str
    per_round: list[dict[str, float]] = Field(description="contribution of each benign trainer, per round")
    total: dict[str, float]
    evaluations: int = Field(description="model evaluations used")
    std_error: dict[str, float] = Field(
        default={}, description="standard error of each total where the method samples (0 where exact)"
    )
    utility: str = Field("accuracy", description="what a coalition's model is valued by on the test set")


class Payout(BaseModel):
    account: str
    role: str
    wei: int


class SettlementReport(BaseModel):
    final_accuracy: float
    accuracy_bps: int
    reward_pool_wei: int
    contributions: dict[str, float]
    contributions_onchain: list[int]
    payouts: list[Payout]
    refund_wei: int
    gas_used: int
    tx_hash: str
    verifier: str | None
    verified: bool
    dp_epsilon: dict[str, float] = Field(
        {}, description="DP-SGD task: trainer -> epsilon it last reported spent (its word)"
    )
