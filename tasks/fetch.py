"""Fetch step: read the round's submissions from chain, fetch each ciphertext by CID (bytes are
checked against the CID), open it with the aggregator's key and the trainer's registered key, and
check it against the trainer's on-chain commitment. A trainer whose submission fails any step is
recorded with the reason and left out; the round goes on. A store or node that cannot be reached
is no verdict about anyone: the step fails, Prefect retries it, and a failed step is not cached,
so the next run fetches again."""

from __future__ import annotations

from pydantic import BaseModel

from fedmarket.commitments import commit, commit_model
from fedmarket.context import current_platform
from fedmarket.crypto import SealContext, open_sealed
from fedmarket.errors import CryptoError, ProtocolError, StoreError, StoreUnavailableError, UpdateError, ZKError
from fedmarket.ml.updates import decode_update
from fedmarket_schemas.market import ModelConfig
from fedmarket_tasks.cache import round_step


class OpenedSubmissions(BaseModel):
    round: int
    submitted: list[str]  # every trainer with a submission on chain, in registration order
    cids: dict[str, str] = {}  # trainer -> CID of its sealed update
    plaintexts: dict[str, bytes]  # trainer -> opened update bytes
    indices: dict[str, int]
    rejected: dict[str, str]


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
    indices: dict[str, int] = {}
    rejected: dict[str, str] = {}
    submissions = market.submissions(round)
    proven = market.round_verifier() is not None
    if proven and model is None:
        raise ProtocolError(f"market {market.address} proves its rounds: fetching needs the task's model")
    for sub in submissions:
        context = SealContext(platform.chain.chain_id, market.address, round, sub.trainer)
        try:
            envelope = platform.store.get(sub.cid)
            plaintext = open_sealed(
                envelope, recipient=box_key, sender=market.encryption_key(sub.trainer), context=context
            )
            if _commitment(plaintext, model, proven) != sub.commitment:
                raise ProtocolError(f"opened update does not match the commitment {sub.commitment} on chain")
        except StoreUnavailableError:
            raise  # the store's fault, not the trainer's: the step fails (retried, never cached)
        except (StoreError, CryptoError, ProtocolError, UpdateError) as exc:
            rejected[sub.trainer] = f"{type(exc).__name__}: {exc}"
            continue
        plaintexts[sub.trainer] = plaintext
        indices[sub.trainer] = sub.index
    return OpenedSubmissions(
        round=round,
        submitted=[s.trainer for s in submissions],
        cids={s.trainer: s.cid for s in submissions},
        plaintexts=plaintexts,
        indices=indices,
        rejected=rejected,
    )


def _commitment(plaintext: bytes, model, proven: bool) -> str:
    """The commitment the opened bytes should have (fedmarket.commitments.commit_model)."""
    if not proven:
        return commit(plaintext)
    try:
        return commit_model(decode_update(plaintext, model), plaintext, proven=True)
    except ZKError as exc:  # off the grid or out of the provable range: not what was committed
        raise ProtocolError(f"opened update cannot be committed for a proof: {exc}") from exc
