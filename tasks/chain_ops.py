"""Chain steps. Each signs with the key of the party named by address; the platform holds it."""

from __future__ import annotations

from fedmarket.chain import TxResult
from fedmarket.runtime import current_platform
from tasks.common import io_task


def _market(address: str):
    return current_platform().market(address)


def _account(address: str):
    return current_platform().party(address).account


@io_task(task_run_name="open-round-{round}")
def open_round(market: str, aggregator: str, round: int, model_cid: str, model_commitment: str) -> TxResult:
    m = _market(market)
    if m.current_round() >= round:  # already open: a rerun must not send it twice
        return TxResult(tx_hash="", gas_used=0, block_number=0, receipt={"modelCid": m.model_cid(round)})
    return m.open_round(_account(aggregator), model_cid, model_commitment)


@io_task(task_run_name="close-reveal")
def close_reveal(market: str, caller: str) -> TxResult:
    return _market(market).close_reveal(_account(caller))


@io_task(task_run_name="submit-r{round}-{trainer}")
def submit_update(market: str, trainer: str, round: int, cid: str, commitment: str) -> TxResult:
    return _market(market).submit(_account(trainer), round, cid, commitment)


@io_task(task_run_name="finalize-round-{round}")
def finalize_round(
    market: str, aggregator: str, round: int, aggregate_cid: str, aggregate_commitment: str, benign_mask: int, proof: bytes
) -> TxResult:
    return _market(market).finalize_round(
        _account(aggregator), round, aggregate_cid, aggregate_commitment, benign_mask, proof
    )


@io_task(task_run_name="settle")
def settle(market: str, aggregator: str, accuracy_bps: int, contributions: list[int], proof: bytes) -> TxResult:
    return _market(market).settle(_account(aggregator), accuracy_bps, contributions, proof)


@io_task(task_run_name="withdraw-{account}")
def withdraw(market: str, account: str) -> TxResult:
    return _market(market).withdraw(_account(account))
