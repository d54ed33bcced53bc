"""What every aggregator process derives the same way from a market: its task and the owner's
data, read by CID, split into validation and test sets by the seed the trainers fixed on chain."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import TypeAdapter

from fedmarket.chain import MarketClient
from fedmarket.ml.data import Dataset, decode_dataset, validation_test_split
from fedmarket.store import ContentStore
from fedmarket.zk import split_by_chunks
from fedmarket_schemas.market import TaskSpec


def seed_int(seed: bytes) -> int:
    """A 32-byte on-chain seed as the 64-bit integer numpy generators take."""
    return int.from_bytes(seed[:8], "big")


@dataclass(frozen=True)
class MarketContext:
    """The task and the owner's data split, as every aggregator process derives them."""

    spec: TaskSpec
    spec_cid: str
    data_cid: str
    split_seed: int
    validation: Dataset
    test: Dataset


def task_spec(market: MarketClient, store: ContentStore) -> TaskSpec:
    """The task the market's spec CID names (needs no split seed: round 1 opens before it is fixed)."""
    return TypeAdapter(TaskSpec).validate_json(store.get(market.spec_cid()))


def market_context(market: MarketClient, store: ContentStore) -> MarketContext:
    """The split of the owner's data is drawn from the seed the trainers fixed on chain by
    commit-reveal, so the owner cannot choose its test set (departure from sources/004, which
    leaves the split to the owner; see contracts/README.md)."""
    spec_cid, data_cid = market.spec_cid(), market.data_cid()
    spec = task_spec(market, store)
    seed = seed_int(market.split_seed())
    data = decode_dataset(store.get(data_cid))
    if spec.test_chunk_rows:  # a proven settlement's committed chunks, one per round
        validation, test = split_by_chunks(data, spec.test_chunk_rows, market.split_seed(), market.round_count())
    else:
        validation, test = validation_test_split(data, validation_fraction=spec.validation_fraction, seed=seed)
    return MarketContext(spec, spec_cid, data_cid, seed, validation, test)
