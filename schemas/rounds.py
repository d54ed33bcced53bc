"""What flows through one round: submissions, the opened local models, the outlier report and
the round report."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class Submission(BaseModel):
    """One trainer's submission as recorded on chain."""

    round: int
    trainer: str
    index: int
    cid: str
    commitment: str


class LocalModels(BaseModel):
    """Opened and validated local models of one round, one row per trainer that passed.
    `rejected` maps trainers whose submission could not be used to the reason."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    round: int
    trainers: list[str]
    indices: list[int]
    matrix: np.ndarray = Field(repr=False, description="float64, one local model per row")
    rejected: dict[str, str] = {}


class OutlierReport(BaseModel):
    round: int
    detector: str
    kept: list[str]
    flagged: list[str]
    reasons: dict[str, str]
    cross_round_scores: dict[str, float] = {}
    cross_round_triggered: bool = False
    cross_trainer_scores: dict[str, float] = {}
    boundary: float | None = None


class RoundReport(BaseModel):
    round: int
    model_cid: str
    aggregate_cid: str
    accuracy: float = Field(description="validation accuracy of the aggregate")
    submitted: list[str]
    submission_cids: dict[str, str] = Field(default={}, description="trainer -> CID of its sealed update")
    flagged: list[str]
    flag_reasons: dict[str, str]
    benign_mask: int
    gas_used: int = Field(description="gas of the whole round: openRound, every submit, finalizeRound")
    gas_by_call: dict[str, int]
    tx_hashes: dict[str, str]
    verifier: str | None = Field(description="round verifier address; None: this round is not proven")
    verified: bool
