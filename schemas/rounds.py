"""What flows through one round: submissions, the opened local models, the outlier report and
the round report."""

from __future__ import annotations

from enum import Enum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fedmarket_schemas.trainer import PrivacySpent


class Submission(BaseModel):
    """One trainer's submission as recorded on chain."""

    round: int
    trainer: str
    index: int
    cid: str
    commitment: str


class ExclusionReason(str, Enum):
    """Why a submission cannot be used: `IDataMarket.ExclusionReason`, in its order (the code on
    chain is the position, None being 0). Reasons from KEY_MISMATCH to COMMITMENT_MISMATCH carry
    the submission's AEAD key as evidence."""

    UNAVAILABLE = "Unavailable"
    REPLAYED = "Replayed"
    BAD_ENVELOPE = "BadEnvelope"
    KEY_MISMATCH = "KeyMismatch"
    DOES_NOT_OPEN = "DoesNotOpen"
    MALFORMED_UPDATE = "MalformedUpdate"
    COMMITMENT_MISMATCH = "CommitmentMismatch"
    MASKED_MALFORMED = "MaskedMalformed"  # secure aggregation: public bytes, no key

    @property
    def code(self) -> int:
        return list(ExclusionReason).index(self) + 1

    @classmethod
    def of_code(cls, code: int) -> ExclusionReason:
        return list(cls)[code - 1]

    @property
    def keyed(self) -> bool:
        return ExclusionReason.KEY_MISMATCH.code <= self.code <= ExclusionReason.COMMITMENT_MISMATCH.code


class Rejection(BaseModel):
    """A submission the aggregator cannot use: the reason, what was found, and the evidence."""

    reason: ExclusionReason
    detail: str
    key: str | None = Field(default=None, description="0x hex of the submission's AEAD key, for keyed reasons")

    def describe(self) -> str:
        return f"{self.reason.value}: {self.detail}"


class LocalModels(BaseModel):
    """Opened and validated local models of one round, one row per trainer that passed.
    `rejected` maps trainers whose submission could not be used to the reason."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    round: int
    trainers: list[str]
    indices: list[int]
    matrix: np.ndarray = Field(repr=False, description="float64, one local model per row")
    rejected: dict[str, Rejection] = {}
    privacy: dict[str, PrivacySpent] = Field({}, description="DP-SGD task: what each trainer reports it spent")


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
    aggregation: str = Field("plain", description="secure: only the survivors' mean was opened (fedmarket/secagg)")
    verifier: str | None = Field(description="round verifier address; None: this round is not proven")
    verified: bool
    dp_epsilon: dict[str, float] = Field(
        {}, description="DP-SGD task: trainer -> epsilon it reports spent in the market so far (its word)"
    )
