"""What makes the aggregator stateless and its rounds resumable.

Everything a round depends on is read back from the chain and the content store: the task and the
owner's data by CID, the split seed, the round's global model by CID, the submitted CIDs, and the
previous round's updates and benign mask (what the cross-round check needs). A round flow can
therefore run in any process, triggered by a chain event, and a killed one can run again.

`round_key` digests those inputs. The resumable steps (tasks/common.py `io_step`,
`compute_step`) persist their results under it, so a rerun reuses every finished step. The key
covers CIDs, which are content hashes, and the submissions' CIDs include the sealing's fresh
ephemeral keys, so two different rounds cannot share a key, not even across chains restarted from
the same genesis.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
from pydantic import TypeAdapter

import fedmarket
from fedmarket.chain import MarketClient
from fedmarket.ml.data import Dataset, decode_dataset, validation_test_split
from fedmarket.ml.models import parameter_count
from fedmarket.ml.updates import decode_update
from fedmarket.runtime import current_platform
from schemas.market import TaskSpec
from schemas.rounds import LocalModels
from tasks.contribution import RoundModels
from fedmarket.zk.settlement_proof import split_by_chunks
from tasks.fetch import OpenedSubmissions, fetch_submissions
from tasks.outliers import History
from tasks.validate import validate_updates


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


def market_context(market: MarketClient) -> MarketContext:
    """The split of the owner's data is drawn from the seed the trainers fixed on chain by
    commit-reveal, so the owner cannot choose its test set (departure from sources/004, which
    leaves the split to the owner; see contracts/README.md)."""
    store = current_platform().store
    spec_cid, data_cid = market.spec_cid(), market.data_cid()
    spec = TypeAdapter(TaskSpec).validate_json(store.get(spec_cid))
    seed = seed_int(market.split_seed())
    data = decode_dataset(store.get(data_cid))
    if spec.test_chunk_rows:  # a proven settlement's committed chunks (fedmarket/zk/settlement_proof.py)
        validation, test = split_by_chunks(data, spec.test_chunk_rows, market.split_seed())
    else:
        validation, test = validation_test_split(data, validation_fraction=spec.validation_fraction, seed=seed)
    return MarketContext(spec, spec_cid, data_cid, seed, validation, test)


def round_key(market: MarketClient, round: int, context: MarketContext) -> str:
    """Digest of everything round `round`'s steps compute from."""
    def submitted(r: int) -> list[list]:
        return [[s.trainer, s.cid, s.commitment] for s in market.submissions(r)]

    parts: list = [
        fedmarket.__version__, market.chain.chain_id, market.address, round,
        context.spec_cid, context.data_cid, context.split_seed, market.model_cid(round), submitted(round),
    ]
    if round > 1:
        parts += [submitted(round - 1), market.round_state(round - 1).benign_mask]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class LoadedRound:
    key: str
    opened: OpenedSubmissions
    models: LocalModels
    start_model: np.ndarray


def load_round(market: MarketClient, aggregator: str, round: int, context: MarketContext) -> LoadedRound:
    """Fetch, open and validate round `round`'s updates (cached steps) and its start model."""
    model = context.spec.model
    key = round_key(market, round, context)
    opened = fetch_submissions(market.address, aggregator, round, key=key, model=model)
    models = validate_updates(opened, model, parameter_count(model), key=key)
    start = decode_update(current_platform().store.get(market.model_cid(round)), model)
    return LoadedRound(key, opened, models, start)


def history_before(market: MarketClient, aggregator: str, round: int, context: MarketContext) -> History:
    """The previous round as the chain recorded it: its updates, who was kept (the benign mask
    finalized on chain) and its start model."""
    history = History()
    if round <= 1:
        return history
    previous = load_round(market, aggregator, round - 1, context)
    mask = market.round_state(round - 1).benign_mask
    history.last_models = previous.models.matrix
    history.last_trainers = list(previous.models.trainers)
    history.last_kept = {t for t, i in zip(previous.models.trainers, previous.models.indices) if mask >> i & 1}
    history.last_start = previous.start_model
    return history


def benign_models(market: MarketClient, aggregator: str, round: int, context: MarketContext) -> RoundModels:
    """Round `round`'s benign models (by the mask on chain), for the contribution metric."""
    loaded = load_round(market, aggregator, round, context)
    mask = market.round_state(round).benign_mask
    rows = [k for k, i in enumerate(loaded.models.indices) if mask >> i & 1]
    return RoundModels(round, [loaded.models.trainers[k] for k in rows], loaded.models.matrix[rows], loaded.start_model)
