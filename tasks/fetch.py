"""Fetch step: read the round's submissions from chain, fetch each ciphertext by CID (bytes are
checked against the CID), open it with the aggregator's key and the trainer's registered key, and
check it against the trainer's on-chain commitment. A trainer whose submission fails any step is
recorded with the reason and its evidence (fedmarket/exclusions.py) and left out, as is a CID
first submitted elsewhere (a replay); the round goes on. A store or node that cannot be reached
is no verdict about anyone: the step fails, Prefect retries it, and a failed step is not cached,
so the next run fetches again."""

from __future__ import annotations

from pydantic import BaseModel

from fedmarket.commitments import round_circuit
from fedmarket.context import current_platform
from fedmarket.crypto import Envelope, SealContext, open_with_key, submission_key
from fedmarket.errors import ProtocolError
from fedmarket.exclusions import UNUSABLE, committed, rejection, replayed
from fedmarket_schemas.market import ModelConfig
from fedmarket_schemas.rounds import Rejection
from fedmarket_tasks.cache import round_step


class OpenedSubmissions(BaseModel):
    """The round's opened submissions. `plaintexts` reach the validate step in memory and are
    never persisted: the validated matrix is the one stored copy of the updates, and a rerun
    whose fetch step was cached reopens them with the recorded keys (`plaintext`)."""

    market: str
    round: int
    submitted: list[str]  # every trainer with a submission on chain, in registration order
    cids: dict[str, str] = {}  # trainer -> CID of its sealed update
    plaintexts: dict[str, bytes]  # trainer -> opened update bytes
    envelope_keys: dict[str, str] = {}  # trainer -> 0x hex of its envelope's key: evidence if it is excluded later
    indices: dict[str, int]
    rejected: dict[str, Rejection]

    def __getstate__(self):
        state = super().__getstate__()
        return {**state, "__dict__": {**state["__dict__"], "plaintexts": {}}}

    def plaintext(self, trainer: str) -> bytes:
        """The trainer's opened update: in memory, else reopened from the store with its key."""
        if trainer not in self.plaintexts:
            platform = current_platform()
            context = SealContext(platform.chain.chain_id, self.market, self.round, trainer)
            envelope = Envelope.parse(platform.store.get(self.cids[trainer]))
            self.plaintexts[trainer] = open_with_key(envelope, bytes.fromhex(self.envelope_keys[trainer][2:]), context)
        return self.plaintexts[trainer]


@round_step(remote=True, task_run_name="fetch-submissions-r{round}")
def fetch_submissions(
    market_address: str, aggregator: str, round: int, *, key: str, model: ModelConfig | None = None
) -> OpenedSubmissions:
    """`model`: the task's, needed in a market whose rounds are proven (its commitments are over
    the decoded update's grid values)."""
    platform = current_platform()
    market = platform.market(market_address)
    box_key = platform.party(aggregator).box_key
    plaintexts: dict[str, bytes] = {}
    keys: dict[str, str] = {}
    indices: dict[str, int] = {}
    rejected: dict[str, Rejection] = {}
    submissions = market.submissions(round)
    sender_keys = market.encryption_keys([s.trainer for s in submissions])
    first_seen = market.first_submissions()
    proven = market.round_verifier() is not None
    if proven and model is None:
        raise ProtocolError(f"market {market.address} proves its rounds: fetching needs the task's model")
    circuit = round_circuit(market, model, platform.settings) if proven else None
    for sub in submissions:
        if replay := replayed(sub.cid, first_seen.get(sub.cid), round, sub.trainer):
            rejected[sub.trainer] = replay
            continue
        context = SealContext(platform.chain.chain_id, market.address, round, sub.trainer)
        envelope_key = None
        try:
            envelope = Envelope.parse(platform.store.get(sub.cid))
            envelope_key = submission_key(envelope, recipient=box_key, sender=sender_keys[sub.trainer])
            plaintext = open_with_key(envelope, envelope_key, context)
            committed(plaintext, sub.commitment, model, circuit)
        except UNUSABLE as exc:
            # an unreachable store re-raises here: the step fails (retried, never cached)
            rejected[sub.trainer] = rejection(exc, envelope_key)
            continue
        plaintexts[sub.trainer] = plaintext
        keys[sub.trainer] = "0x" + envelope_key.hex()
        indices[sub.trainer] = sub.index
    return OpenedSubmissions(
        market=market.address,
        round=round,
        submitted=[s.trainer for s in submissions],
        cids={s.trainer: s.cid for s in submissions},
        plaintexts=plaintexts,
        envelope_keys=keys,
        indices=indices,
        rejected=rejected,
    )
