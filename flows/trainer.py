"""A trainer's own process (`fedmarket trainer run`): it follows one market on chain, registers,
reveals its split seed, trains on its private data whenever a round opens, and withdraws its
payout once the market is settled. Its data never leaves it: only sealed updates are stored, or,
in a secure-aggregation market, masked ones (and it posts its keys and reveals its shares)."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger
from pydantic import TypeAdapter

from fedmarket.chain.market import FINAL_PHASES
from fedmarket.context import current_platform
from fedmarket.errors import ConfigError, PrivacyBudgetError, SecureAggregationError
from fedmarket.ml.data import Dataset
from fedmarket.ml.formats import load_dataset
from fedmarket.ml.updates import decode_update
from fedmarket.secagg.onchain import board_of
from fedmarket_schemas.market import Aggregation, TaskSpec
from fedmarket_tasks.chain_ops import submit_update, withdraw
from fedmarket_tasks.common import transient
from fedmarket_tasks.report import tag_run
from fedmarket_tasks.secure import check_keys, mask_and_store, post_keys, reveal_shares
from fedmarket_tasks.store_ops import get_bytes
from fedmarket_tasks.trainer import (
    check_local_data,
    check_market,
    privacy_after,
    register,
    reveal_seed,
    seal_and_store,
    train,
)


def load_local_data(path: Path, spec: TaskSpec) -> Dataset:
    """The trainer's file in any format `fedmarket data` reads (fedmarket.ml.formats), under the
    task's schema: its label column, its feature columns, its label values."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"trainer data file {path} does not exist")
    return load_dataset(path, spec.data_schema)


def task_of(market: str) -> TaskSpec:
    client = current_platform().market(market)
    return TypeAdapter(TaskSpec).validate_json(get_bytes(client.spec_cid()))


@flow(name="fedmarket-trainer-join", flow_run_name="join-{market}")
def join_flow(market: str, data_path: str) -> str:
    """Check the local data against the task and register (once)."""
    platform = current_platform()
    me = platform.me.address
    client = platform.market(market)
    tag_run("trainer", client.address)
    if me in client.trainers():
        return "already registered"
    spec = task_of(market)
    checked = check_market(client.address, spec)
    summary = check_local_data(me, load_local_data(Path(data_path), spec), spec)
    registration = register(client.address, me, summary)
    for line in checked:
        get_run_logger().info("checked %s", line)
    return f"registered as trainer {registration.index}; checked " + "; ".join(checked)


@flow(name="fedmarket-trainer-round", flow_run_name="train-r{round}-{market}")
def trainer_round_flow(market: str, round: int, data_path: str) -> str:
    """Train on the local data from round `round`'s global model, seal the update to the
    aggregator (secure aggregation: mask it), store it and submit its CID; a round already
    submitted is left alone."""
    platform = current_platform()
    me = platform.me.address
    client = platform.market(market)
    tag_run("trainer", client.address, round)
    index = client.trainers().index(me)
    if client.submitted_mask(round) >> index & 1:
        return "already submitted"
    spec = task_of(market)
    data = load_local_data(Path(data_path), spec)
    trained_before = sum(client.submitted_mask(r) >> index & 1 for r in range(1, round))
    privacy = privacy_after(spec, data, trained_before)  # refuses a round past the DP budget
    global_model = decode_update(get_bytes(client.model_cid(round)), spec.model)
    seed = int.from_bytes(bytes.fromhex(me[2:10]), "big") + round
    local = train(me, round, global_model, data, spec, seed=seed, trained_before=trained_before)
    if spec.aggregation == Aggregation.secure:  # masked: nobody sees this model, only the survivors' sum
        cid, commitment = mask_and_store(client.address, me, round, local, spec, privacy)
    else:
        cid, commitment = seal_and_store(client.address, me, round, local, spec, privacy)
    submit_update(client.address, me, round, cid, commitment)
    get_run_logger().info("round %d: submitted %s", round, cid)
    return cid


def secure_duties(market: str, me: str, checked: set[int] | None = None) -> str:
    """A secure-aggregation trainer's part between its rounds: post its keys while no round is
    open, check its shares of every new bundle (complain against a dealer whose shares fail) and
    answer complaints against it; and reveal its shares for the current round once the board
    opened its reveals. `checked`: the dealers whose bundles it checked, kept between calls."""
    client = current_platform().market(market)
    board = board_of(client)
    index = client.trainers().index(me)
    round = client.current_round()
    checked = set() if checked is None else checked
    done = []
    if round == 0 or client.round_state(round).finalized:
        keyed = board.keyed_mask(client.address)
        if not keyed >> index & 1:
            post_keys(client.address, me)
            done.append("posted keys")
            keyed = board.keyed_mask(client.address)
        unchecked = {i for i in range(keyed.bit_length()) if keyed >> i & 1} - checked
        unanswered = board.complained_mask(client.address, index) & ~board.answered_mask(client.address, index)
        if unchecked or unanswered:
            sent = check_keys(client.address, me)
            checked |= unchecked
            if sent:
                done.append(f"sent {len(sent)} complaints or answers")
    if round and not client.round_state(round).finalized:
        fixed = board.round_reveals(client.address, round)
        if fixed.open and not fixed.revealed >> index & 1:
            reveal_shares(client.address, me, round)
            done.append(f"revealed round {round} shares")
    return "; ".join(done)


def follow_market(market: str, data_path: Path, *, poll_s: float, log=print) -> str:
    """The trainer daemon: act on whatever the market's phase asks of this trainer until the
    market ends; then withdraw what is owed. Returns the final phase. A step that fails to reach
    the node, the store or the Prefect API is tried again at the next poll: every step reads
    chain state first, so a repeat does nothing twice."""
    platform = current_platform()
    me = platform.me.address
    client = platform.market(market)
    load_local_data(data_path, task_of(market))  # fail before touching the chain if the data is unreadable
    spent = False  # the task's DP budget allows no more rounds
    sitting_out: set[int] = set()  # secure aggregation: rounds this trainer holds no keys for
    secure = task_of(market).aggregation == Aggregation.secure
    checked: set[int] = set()  # secure aggregation: dealers whose key bundles this trainer checked
    while True:
        try:
            phase = client.phase()
            if (
                secure
                and phase == "Training"
                and client.is_active(me)
                and (done := secure_duties(client.address, me, checked))
            ):
                log(done)
            if phase == "Registration" and me not in client.trainers():
                log(join_flow(client.address, str(data_path)))
            elif phase == "SeedReveal" and me in client.trainers() and not client.is_active(me):
                reveal_seed(client.address, me)
                log("revealed split seed")
            elif phase == "Training" and client.is_active(me):
                round = client.current_round()
                state = client.round_state(round) if round else None
                index = client.trainers().index(me)
                if (
                    state
                    and not spent
                    and round not in sitting_out
                    and not state.finalized
                    and client.chain.now() <= state.deadline
                    and not client.submitted_mask(round) >> index & 1
                ):
                    try:
                        log(f"round {round}: " + trainer_round_flow(client.address, round, str(data_path)))
                    except PrivacyBudgetError as exc:
                        log(f"round {round}: {exc}")
                        spent = True
                    except SecureAggregationError as exc:  # no keys for this round: it takes part from the next
                        log(f"round {round}: {exc}")
                        sitting_out.add(round)
                    continue
            elif phase in FINAL_PHASES:
                if client.owed(me) > 0:
                    tx = withdraw(client.address, me)
                    log(f"withdrew payout in {tx.tx_hash}")
                return phase
        except Exception as exc:
            if not transient(exc):
                raise
            log(f"{type(exc).__name__}, retried at the next poll: {exc}")
        time.sleep(poll_s)
