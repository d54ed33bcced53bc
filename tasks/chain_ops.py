"""Chain steps. Each signs with the key of the party named by address; the platform holds it.
Steps a rerun may repeat read chain state first and return the transaction that already landed
instead of sending a second one."""

from __future__ import annotations

from collections.abc import Callable

from fedmarket.chain import TxResult
from fedmarket.context import current_platform
from fedmarket.errors import ChainError, ChainUnavailableError, ProtocolError
from fedmarket_schemas.rounds import Rejection
from fedmarket_tasks.common import remote_task


def _market(address: str):
    return current_platform().market(address)


def _account(address: str):
    return current_platform().party(address).account


def _unless_done(send: Callable[[], TxResult], done: Callable[[], TxResult | None]) -> TxResult:
    """Send; where the send fails because another run of the same step got there first (the
    scheduled and the event-triggered run of one step: a revert, or the nonce that run took),
    that run's transaction is this one's result. A node out of reach stays a retry."""
    try:
        return send()
    except ChainUnavailableError:
        raise
    except ChainError:
        if (found := done()) is not None:
            return found
        raise


@remote_task(task_run_name="open-round-{round}")
def open_round(market: str, aggregator: str, round: int, model_cid: str, model_commitment: str) -> TxResult:
    m = _market(market)

    def opened() -> TxResult | None:
        found = m.last_event("RoundOpened", round=round) if m.current_round() >= round else None
        return found[1] if found else None

    if (found := opened()) is not None:
        return found
    return _unless_done(lambda: m.open_round(_account(aggregator), model_cid, model_commitment), opened)


@remote_task(task_run_name="close-reveal")
def close_reveal(market: str, caller: str) -> TxResult:
    return _market(market).close_reveal(_account(caller))


@remote_task(task_run_name="submit-r{round}-{trainer}")
def submit_update(market: str, trainer: str, round: int, cid: str, commitment: str) -> TxResult:
    return _market(market).submit(_account(trainer), round, cid, commitment)


@remote_task(task_run_name="exclude-r{round}")
def exclude_submissions(market: str, aggregator: str, round: int, rejected: dict[int, Rejection]) -> TxResult | None:
    """Exclude on chain, by trainer index, every rejected submission of the round not excluded
    yet; a rerun after the transaction landed returns it instead. None when nothing is excluded.
    (What the chain already excludes, the round's loaded models leave out: tasks/load.py.)"""
    m = _market(market)
    on_chain = m.excluded_mask(round)
    missing = {i: r for i, r in rejected.items() if not on_chain >> i & 1}
    if not missing:
        return m.last_event("SubmissionExcluded", round=round)[1] if on_chain else None
    return m.exclude(_account(aggregator), round, missing)


@remote_task(task_run_name="finalize-round-{round}")
def finalize_round(
    market: str,
    aggregator: str,
    round: int,
    aggregate_cid: str,
    aggregate_commitment: str,
    benign_mask: int,
    proof: bytes,
) -> TxResult:
    m = _market(market)

    def finalized() -> TxResult | None:
        if not m.round_state(round).finalized:
            return None
        args, tx = m.last_event("RoundFinalized", round=round)
        if (
            int(args["benignMask"]) != benign_mask
            or "0x" + bytes(args["aggregateCommitment"]).hex() != aggregate_commitment
        ):
            raise ProtocolError(
                f"round {round} was finalized with mask {int(args['benignMask']):#x}, not this run's {benign_mask:#x}"
                " or with another aggregate: the round's inputs changed between runs"
            )
        return tx

    if (found := finalized()) is not None:
        return found

    def send() -> TxResult:
        return m.finalize_round(_account(aggregator), round, aggregate_cid, aggregate_commitment, benign_mask, proof)

    # a secure round has two triggered runs: where both send, the one refused returns the other's
    return _unless_done(send, finalized)


@remote_task(task_run_name="prove-contributions-r{round}")
def prove_contributions(
    market: str, aggregator: str, round: int, accuracy_bps: int, contributions: list[int], proof: bytes
) -> TxResult:
    """Round `round`'s proven contributions; a rerun finds the transaction that recorded them."""
    m = _market(market)

    def proven() -> TxResult | None:
        found = m.last_event("ContributionsProven", round=round)
        return found[1] if found else None

    if (found := proven()) is not None:
        return found
    return _unless_done(
        lambda: m.prove_contributions(_account(aggregator), round, accuracy_bps, contributions, proof), proven
    )


@remote_task(task_run_name="settle")
def settle(market: str, aggregator: str, accuracy_bps: int, contributions: list[int]) -> TxResult:
    m = _market(market)
    if m.phase() == "Settled":
        return m.last_event("Settled")[1]
    return m.settle(_account(aggregator), accuracy_bps, contributions)


@remote_task(task_run_name="withdraw-{account}")
def withdraw(market: str, account: str) -> TxResult:
    return _market(market).withdraw(_account(account))
