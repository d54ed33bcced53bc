"""The project owner's actions (`fedmarket owner ...`): create a market with its escrow, read its
status from the chain, cancel it during registration, withdraw the refund."""

from __future__ import annotations

from pathlib import Path

from fedmarket.chain import FactoryClient
from fedmarket.commitments import commit
from fedmarket.datacheck import check_dataset, require_valid
from fedmarket.errors import ConfigError
from fedmarket.ml.data import decode_dataset
from fedmarket.runtime import current_platform
from schemas.market import MarketSpec, ModelConfig, ModelKind, RewardSchedule, TaskSpec, TrainingConfig

ETHER = 10**18
DEFAULT_SCHEDULE = RewardSchedule(thresholds_bps=(5000, 8000, 9000), pools_wei=(ETHER // 5, ETHER // 2, ETHER))


def create_market(
    data_file: Path, aggregator: str, aggregator_key: str, *, trainers: int, rounds: int, model: str,
    participation_reward_wei: int, aggregator_fee_wei: int, round_duration_s: int, reveal_window_s: int,
) -> dict:
    platform = current_platform()
    me = platform.me
    if not Path(data_file).is_file():
        raise ConfigError(f"owner data file {data_file} does not exist")
    raw = Path(data_file).read_bytes()
    kind = ModelKind(model)
    task = TaskSpec(model=ModelConfig(kind=kind), training=TrainingConfig.for_model(kind))
    owner_data = decode_dataset(raw)
    require_valid(check_dataset(owner_data.features, owner_data.labels, task.data_schema, dataset="owner"))
    spec = MarketSpec(
        task_cid=str(platform.store.put(task.model_dump_json().encode())),
        data_cid=str(platform.store.put(raw)),
        data_commitment=commit(raw),
        aggregator=aggregator,
        aggregator_key=aggregator_key,
        trainers=trainers,
        rounds=rounds,
        round_duration_s=round_duration_s,
        reveal_window_s=reveal_window_s,
        participation_reward_wei=participation_reward_wei,
        aggregator_fee_wei=aggregator_fee_wei,
        schedule=DEFAULT_SCHEDULE,
    )
    if platform.settings.factory_address:
        factory = FactoryClient(platform.chain, platform.settings.factory_address)
    else:
        factory, _ = FactoryClient.deploy(platform.chain, me.account)
    market, tx = factory.create_market(me.account, spec, spec.max_payout())
    return {"market": market.address, "factory": factory.address, "deposit": spec.max_payout(), "tx": tx.tx_hash,
            "block": tx.block_number}


def market_status(market: str) -> dict:
    client = current_platform().market(market)
    trainers = client.trainers()
    rounds = []
    for r in range(1, client.current_round() + 1):
        state = client.round_state(r)
        rounds.append({"round": r, "deadline": state.deadline, "submitted_mask": client.submitted_mask(r),
                       "finalized": state.finalized, "verified": state.verified, "benign_mask": state.benign_mask})
    parties = [client.owner(), client.aggregator(), *trainers]
    return {
        "market": client.address,
        "phase": client.phase(),
        "rounds_total": client.round_count(),
        "rounds": rounds,
        "trainers": trainers,
        "active_mask": client.active_mask() if client.phase() not in ("Registration", "SeedReveal") else 0,
        "deposit": client.deposit(),
        "balance": client.balance(),
        "owed": {p: client.owed(p) for p in dict.fromkeys(parties)},
    }


def cancel_market(market: str) -> dict:
    platform = current_platform()
    tx = platform.market(market).cancel(platform.me.account)
    return {"market": market, "tx": tx.tx_hash, "phase": platform.market(market).phase()}


def withdraw_owed(market: str) -> dict:
    platform = current_platform()
    client = platform.market(market)
    owed = client.owed(platform.me.address)
    if owed == 0:
        return {"market": market, "withdrawn": 0}
    tx = client.withdraw(platform.me.account)
    return {"market": market, "withdrawn": owed, "tx": tx.tx_hash}
