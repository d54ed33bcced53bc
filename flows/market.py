"""The aggregator's side of one market's lifecycle (sources/004, section IV).

`advance_flow` does the next thing the chain says is due, and nothing when nothing is: close an
expired seed reveal, or open the next round with the last aggregate. The deployments run
it on chain events (prefect.yaml), and `advance_all_flow` on a schedule for every market of the
aggregator's, which also catches what no event announces (a seed reveal's deadline) and what a
listener that was down missed. `market_flow` is the same lifecycle as one polling loop, for a
single process (`fedmarket aggregator run`, the demo).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prefect import flow, get_run_logger

from fedmarket.chain import FactoryClient
from fedmarket.chain.listener import Checkpoint
from fedmarket.chain.market import FINAL_PHASES
from fedmarket.commitments import commit_model, round_circuit
from fedmarket.context import current_platform
from fedmarket.errors import ConfigError, ProtocolError
from fedmarket.fixed_point import quantize
from fedmarket.market_context import task_spec
from fedmarket.ml.training import initial_model
from fedmarket.ml.updates import encode_update
from fedmarket_flows.round import round_flow
from fedmarket_flows.settlement import settlement_flow
from fedmarket_schemas.market import Aggregation
from fedmarket_schemas.rounds import RoundReport
from fedmarket_schemas.settlement import SettlementReport
from fedmarket_tasks.chain_ops import close_reveal, open_round
from fedmarket_tasks.report import tag_run
from fedmarket_tasks.secure import close_submissions, fix_split_seed, keys_ready, wait_for_checks, wait_for_keys
from fedmarket_tasks.store_ops import get_bytes, put_bytes

TrainerStep = Callable[[int], None]


def open_next_round(market: str, aggregator: str, *, check_s: float | None = None) -> int | None:
    """Open the round after the last finalized one, with its aggregate as the global model (the
    initial model for round 1). Returns the round opened, or None if a round is still running or
    every round is done. In a secure-aggregation market it first gives the trainers `check_s`
    (default FEDMARKET_SECAGG_CHECK_S) to complain against new key bundles and their dealers to
    answer (tasks/secure.wait_for_checks)."""
    platform = current_platform()
    client = platform.market(market)
    current = client.current_round()
    if client.phase() != "Training" or current >= client.round_count():
        return None
    if current > 0 and not client.round_state(current).finalized:
        return None
    if _secure(client):
        check_s = platform.settings.secagg_check_s if check_s is None else check_s
        wait_for_checks(client.address, current + 1, poll_s=platform.settings.poll_interval_s, check_s=check_s)
    if current == 0:
        spec = task_spec(client, current_platform().store)
        circuit = round_circuit(client, spec.model, current_platform().settings)
        start = initial_model(spec.model, seed=spec.init_seed)
        on_grid = circuit is not None or spec.aggregation == Aggregation.secure  # the models its circuits read
        start = quantize(start) if on_grid else start
        plaintext = encode_update(start, spec.model)
        cid, commitment = put_bytes(plaintext), commit_model(start, plaintext, circuit=circuit, global_model=True)
    else:
        cid, commitment = client.aggregate_of(current)  # the same bytes, already stored
        get_bytes(cid)  # fails loudly if the store lost it, before trainers are sent looking
    open_round(client.address, aggregator, current + 1, cid, commitment)
    return current + 1


@flow(name="fedmarket-advance", flow_run_name="advance-{market}")
def advance_flow(market: str, aggregator: str | None = None, wait: bool = True) -> str:
    """Do what is due in `market`: 'closed-reveal', 'opened-round-N', or 'nothing'. Before round 1
    of a secure-aggregation market it waits for every trainer's keys (at most half the window);
    with `wait` false (runs triggered by chain events or the schedule) it returns
    'waiting-for-keys' instead, and the listener's keys-complete or the schedule runs it again."""
    platform = current_platform()
    aggregator = aggregator or platform.me.address
    client = platform.market(market)
    tag_run("aggregator", client.address)
    phase = client.phase()
    if phase == "SeedReveal" and client.chain.now() > client.reveal_deadline():
        close_reveal(client.address, aggregator)
        return "closed-reveal"
    if phase == "Training" and client.current_round() == 0 and _secure(client):
        if wait:
            wait_for_keys(client.address, aggregator, poll_s=platform.settings.poll_interval_s)
        else:
            fix_split_seed(client.address, aggregator)
            if not keys_ready(client.address):
                get_run_logger().info("market %s: waiting for the trainers' keys (no worker held)", client.address)
                return "waiting-for-keys"
    if phase == "Training" and (opened := open_next_round(client.address, aggregator)) is not None:
        return f"opened-round-{opened}"
    # settlement has a deployment of its own, triggered by fedmarket.market.rounds-complete
    get_run_logger().info("market %s in phase %s: nothing due", client.address, phase)
    return "nothing"


def aggregated_markets(factory: str, aggregator: str) -> list[str]:
    """The markets of `factory` that `aggregator` runs, oldest first. A schedule asks every few
    minutes, so the factory's logs are read once, from FEDMARKET_FACTORY_FROM_BLOCK, and then
    only the blocks since (a checkpoint in FEDMARKET_STATE_DIR; one unreadable is read again)."""
    platform = current_platform()
    chain = platform.chain
    path = platform.settings.state_dir / f"markets-{chain.chain_id}-{factory.lower()}-{aggregator.lower()}.json"
    try:
        checkpoint = Checkpoint.model_validate_json(path.read_text())
    except (OSError, ValueError):
        checkpoint = Checkpoint(chain_id=chain.chain_id, next_block=platform.settings.factory_from_block)
    head = chain.head()
    if checkpoint.next_block <= head:
        found = FactoryClient(chain, factory).markets_aggregated_by(aggregator, checkpoint.next_block, head)
        checkpoint.markets += found
        checkpoint.next_block = head + 1
        checkpoint.save(path)
    return checkpoint.markets


@flow(name="fedmarket-advance-all", flow_run_name="advance-all")
def advance_all_flow(factory: str | None = None) -> dict[str, str]:
    """`advance_flow` in every market of `factory` (default FEDMARKET_FACTORY_ADDRESS) that this
    process's key aggregates and that is still under way; returns what each did. Rounds opened
    here and by the event-triggered runs are one transaction each (tasks/chain_ops.py)."""
    platform = current_platform()
    factory = factory or platform.settings.factory_address
    if not factory:
        raise ConfigError("advance-all needs the factory whose markets to follow: set FEDMARKET_FACTORY_ADDRESS")
    me = platform.me.address
    done = {}
    for market in aggregated_markets(factory, me):
        phase = platform.market(market).phase()
        if phase in ("Registration", "SeedReveal", "Training"):
            done[market] = advance_flow(market, me, wait=False)
    get_run_logger().info("advanced %d markets: %s", len(done), done or "none under way")
    return done


def wait_for_submissions(market: str, round: int, *, poll_s: float = 2.0) -> None:
    """Until every active trainer submitted or the round's deadline passed (chain time)."""
    client = current_platform().market(market)
    active = client.active_mask()
    while client.submitted_mask(round) != active and client.chain.now() <= client.round_state(round).deadline:
        time.sleep(poll_s)


def _secure(client) -> bool:
    return task_spec(client, current_platform().store).aggregation == Aggregation.secure


@flow(name="fedmarket-market", flow_run_name="market-{market}", validate_parameters=False)
def market_flow(
    market: str,
    aggregator: str | None = None,
    trainer_step: TrainerStep | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
    poll_s: float = 2.0,
    key_step: Callable[[], None] | None = None,
    reveal_step: TrainerStep | None = None,
) -> tuple[list[RoundReport], SettlementReport]:
    """Run every round of the market, then settle, polling the chain. `trainer_step(round)` runs
    after a round opens; the demo uses it to play the trainers in this process, real trainers run
    their own (`fedmarket trainer run`). In a secure-aggregation market, `key_step()` runs before
    round 1, when trainers post and check their keys, and `reveal_step(round)` once a round's
    reveals are open. Resumes a market already under way."""
    platform = current_platform()
    aggregator = aggregator or platform.me.address
    client = platform.market(market)
    tag_run("aggregator", client.address)
    while client.phase() in ("Registration", "SeedReveal"):
        if advance_flow(client.address, aggregator) == "nothing":
            time.sleep(poll_s)
    if client.phase() in FINAL_PHASES:
        raise ProtocolError(f"market {client.address} is {client.phase()}: nothing to run")
    secure = _secure(client)
    reports = []
    for round in range(1, client.round_count() + 1):
        if client.round_state(round).deadline == 0:
            if round == 1 and secure:
                if key_step is not None:
                    key_step()
                wait_for_keys(client.address, aggregator, poll_s=poll_s)
            # trainers played here by `key_step` checked every bundle before it returned
            open_next_round(client.address, aggregator, check_s=0.0 if key_step is not None else None)
            if trainer_step is not None:
                trainer_step(round)
        if not client.round_state(round).finalized:
            wait_for_submissions(client.address, round, poll_s=poll_s)
            if secure:
                close_submissions(client.address, aggregator, round, task_spec(client, platform.store))
                if reveal_step is not None:
                    reveal_step(round)
        report = round_flow(client.address, round, aggregator)
        reports.append(report)
        if on_round is not None:
            on_round(report)
    settlement = settlement_flow(client.address, aggregator)
    get_run_logger().info("market %s settled with test accuracy %.4f", client.address, settlement.final_accuracy)
    return reports, settlement
