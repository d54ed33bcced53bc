"""The aggregator's side of one market: read the task and the owner's data by CID, derive the
validation/test split, run every round, then settle (sources/004, section IV)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prefect import flow, get_run_logger
from pydantic import TypeAdapter

from fedmarket.commitments import commit
from fedmarket.errors import ProtocolError
from fedmarket.ml.data import decode_dataset, validation_test_split
from fedmarket.ml.training import initial_model
from fedmarket.ml.updates import encode_update
from fedmarket.runtime import current_platform
from flows.round import round_flow
from flows.settlement import settlement_flow
from flows.state import AggregatorState, seed_int
from schemas.market import TaskSpec
from schemas.rounds import RoundReport
from schemas.settlement import SettlementReport
from tasks.chain_ops import close_reveal, open_round
from tasks.store_ops import get_bytes, put_bytes

TrainerStep = Callable[[int], None]


def wait_for_training(market_address: str, aggregator: str, *, poll_s: float = 2.0) -> None:
    """Until the trainers' seeds are revealed; past the reveal deadline the aggregator closes the
    reveal itself, so trainers who never reveal cannot hold the market up."""
    market = current_platform().market(market_address)
    while (phase := market.phase()) in ("Registration", "SeedReveal"):
        if phase == "SeedReveal" and market.chain.now() > market.reveal_deadline():
            close_reveal(market.address, aggregator)
            continue
        time.sleep(poll_s)


def prepare(market_address: str, aggregator: str) -> AggregatorState:
    """The split of the owner's data is drawn from the seed the trainers fixed on chain by
    commit-reveal, so the owner cannot choose its test set (departure from sources/004, which
    leaves the split to the owner; see contracts/README.md)."""
    market = current_platform().market(market_address)
    spec = TypeAdapter(TaskSpec).validate_json(get_bytes(market.spec_cid()))
    owner_data = decode_dataset(get_bytes(market.data_cid()))
    seed = seed_int(market.split_seed())
    validation, test = validation_test_split(owner_data, validation_fraction=spec.validation_fraction, seed=seed)
    return AggregatorState(
        market=market.address,
        aggregator=aggregator,
        spec=spec,
        validation=validation,
        test=test,
        global_model=initial_model(spec.model, seed=spec.init_seed),
        split_seed=seed,
    )


def wait_for_submissions(market_address: str, round: int, *, poll_s: float = 2.0) -> None:
    """Until every trainer submitted or the round's deadline passed (chain time)."""
    market = current_platform().market(market_address)
    active = market.active_mask()
    while True:
        if market.submitted_mask(round) == active or market.chain.now() > market.round_state(round).deadline:
            return
        time.sleep(poll_s)


@flow(name="fedmarket-market", validate_parameters=False)
def market_flow(
    market_address: str, aggregator: str, trainer_step: TrainerStep | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
) -> tuple[list[RoundReport], SettlementReport]:
    """Run every round of the market, then settle. `trainer_step(round)` runs after a round opens;
    the demo uses it to play the trainers in this process, real trainers run their own."""
    logger = get_run_logger()
    wait_for_training(market_address, aggregator)
    state = prepare(market_address, aggregator)
    market = current_platform().market(state.market)
    if market.phase() != "Training":
        raise ProtocolError(f"market {state.market} is in phase {market.phase()}, not Training")
    for round in range(1, market.round_count() + 1):
        plaintext = encode_update(state.global_model, state.spec.model)
        tx = open_round(state.market, aggregator, round, put_bytes(plaintext), commit(plaintext))
        if trainer_step is not None:
            trainer_step(round)
        wait_for_submissions(state.market, round)
        report = round_flow(state, round, open_gas=tx.gas_used, open_block=tx.block_number)
        if on_round is not None:
            on_round(report)
    settlement = settlement_flow(state)
    logger.info("market %s settled with test accuracy %.4f", state.market, settlement.final_accuracy)
    return state.reports, settlement
