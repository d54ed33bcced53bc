"""What trainers publish in a secure-aggregation market (fedmarket/secagg): one key bundle each
when training starts, one share reveal each per round, and a dealer's answer to each complaint
against it. All are stored by CID, so anyone who reads them can rebuild a round's aggregate from
its masked updates."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="a secp256k1 scalar, 32 bytes")]
Point = Annotated[str, Field(pattern=r"^0[23][0-9a-f]{64}$", description="a compressed secp256k1 point")]


class RoundKeys(BaseModel):
    """One dealer's public part for one round: the Feldman commitments to the polynomials that
    share its two seeds (fedmarket/secagg/feldman.py), constant term first, so that every share is
    checked and a wrong one attributed. The mask seed is also the round's mask private key, so
    its first commitment is the mask public key."""

    model_config = ConfigDict(frozen=True)

    mask_commitments: tuple[Point, ...]
    self_commitments: tuple[Point, ...]

    @property
    def mask_public_key(self) -> str:
        return self.mask_commitments[0]


class KeyBundle(BaseModel):
    """A dealer's keys and sealed shares for rounds 1..len(rounds) of one market."""

    model_config = ConfigDict(frozen=True)

    version: int = 2
    chain_id: int
    market: str
    dealer: int = Field(ge=0, description="the dealer's registration index")
    threshold: int = Field(ge=1, description="shares needed to rebuild one of the dealer's seeds")
    holders: tuple[int, ...] = Field(description="registration indices that hold a share, ascending")
    rounds: tuple[RoundKeys, ...]
    sealed: tuple[str, ...] = Field(description="hex envelope per holder: its shares for every round")

    @model_validator(mode="after")
    def _aligned(self) -> KeyBundle:
        n = len(self.holders)
        if list(self.holders) != sorted(set(self.holders)):
            raise ValueError("holders must be distinct and ascending")
        if self.threshold > n or len(self.sealed) != n:
            raise ValueError(f"{n} holders need one sealed share each and a threshold of at most {n}")
        for keys in self.rounds:
            if len(keys.mask_commitments) != self.threshold or len(keys.self_commitments) != self.threshold:
                raise ValueError(f"every round needs {self.threshold} commitments per seed, one per coefficient")
        return self


class PairPoint(BaseModel):
    """A pair's shared mask point and the Chaum-Pedersen proof that its revealer made it with its
    own mask key (fedmarket/secagg/dleq.py): challenge and response as scalars."""

    model_config = ConfigDict(frozen=True)

    point: Point
    challenge: Scalar
    response: Scalar


class ShareReveal(BaseModel):
    """What one holder reveals after round `round`: its share of each surviving dealer's self-mask
    seed and of each dropped dealer's mask seed (never both for one dealer), by dealer index; in a
    norm-bound market, also its shared mask point with each peer whose stored commitment to their
    pair's stream differs from its own, to settle which of the two lies."""

    model_config = ConfigDict(frozen=True)

    version: int = 2
    chain_id: int
    market: str
    round: int = Field(ge=1)
    holder: int = Field(ge=0)
    self_shares: dict[int, Scalar] = {}
    mask_shares: dict[int, Scalar] = {}
    pair_points: dict[int, PairPoint] = {}

    @model_validator(mode="after")
    def _disjoint(self) -> ShareReveal:
        both = set(self.self_shares) & set(self.mask_shares)
        if both:
            raise ValueError(f"reveals both seeds of dealers {sorted(both)}")
        return self


class ShareAnswer(BaseModel):
    """A dealer's answer to holder `holder`'s complaint: that holder's shares of the dealer's two
    seeds for every round, in the clear, for anyone to check against the dealer's commitments."""

    model_config = ConfigDict(frozen=True)

    version: int = 2
    chain_id: int
    market: str
    dealer: int = Field(ge=0)
    holder: int = Field(ge=0)
    shares: tuple[tuple[Scalar, Scalar], ...] = Field(description="per round from 1: (mask share, self share)")
