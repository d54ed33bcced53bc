"""What trainers publish in a secure-aggregation market (fedmarket/secagg): one key bundle each
when training starts, and one share reveal each per round. Both are stored by CID, so anyone
who reads them can rebuild a round's aggregate from its masked updates."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

Hex16 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class RoundKeys(BaseModel):
    """One dealer's public part for one round: its mask public key, hashes of its two seeds, and
    a hash of every holder's share of each (aligned with `KeyBundle.holders`), so that a wrong
    share or a wrong rebuilt seed is caught and attributed."""

    model_config = ConfigDict(frozen=True)

    mask_public_key: Hex32
    mask_seed_hash: Hex32
    self_seed_hash: Hex32
    mask_share_hashes: tuple[Hex32, ...]
    self_share_hashes: tuple[Hex32, ...]


class KeyBundle(BaseModel):
    """A dealer's keys and sealed shares for rounds 1..len(rounds) of one market."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
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
            if len(keys.mask_share_hashes) != n or len(keys.self_share_hashes) != n:
                raise ValueError("every round needs one share hash per holder")
        return self


class ShareReveal(BaseModel):
    """What one holder reveals after round `round`: its share of each surviving dealer's self-mask
    seed and of each dropped dealer's mask seed (never both for one dealer), by dealer index."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    chain_id: int
    market: str
    round: int = Field(ge=1)
    holder: int = Field(ge=0)
    self_shares: dict[int, Hex16] = {}
    mask_shares: dict[int, Hex16] = {}

    @model_validator(mode="after")
    def _disjoint(self) -> ShareReveal:
        both = set(self.self_shares) & set(self.mask_shares)
        if both:
            raise ValueError(f"reveals both seeds of dealers {sorted(both)}")
        return self
