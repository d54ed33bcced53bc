"""The project owner's actions (`fedmarket owner ...`): create a market with its escrow, read its
status from the chain, cancel it during registration, withdraw the refund."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from fedmarket.chain import FactoryClient, MarketClient, TxResult
from fedmarket.commitments import commit
from fedmarket.datacheck import check_dataset, require_valid
from fedmarket.errors import ConfigError
from fedmarket.ml.data import Dataset, decode_dataset, encode_dataset
from fedmarket.ml.models import parameter_count
from fedmarket.runtime import Party, current_platform
from schemas.market import MarketSpec, ModelConfig, ModelKind, RewardSchedule, TaskSpec, TrainingConfig

ETHER = 10**18
DEFAULT_SCHEDULE = RewardSchedule(thresholds_bps=(5000, 8000, 9000), pools_wei=(ETHER // 5, ETHER // 2, ETHER))


class Published(NamedTuple):
    market: MarketClient
    created: TxResult
    factory: FactoryClient
    task: TaskSpec


def publish_market(
    owner: Party, data: Dataset, kind: ModelKind, *, prove_rounds: bool = False, test_rows: int | None = None, **terms
) -> Published:
    """Check the owner's data against the task's expectations, store task and data by CID, and
    create the market through the factory (FEDMARKET_FACTORY_ADDRESS, else a new one) with the
    largest possible payout in escrow. `prove_rounds`: reference the round circuit's verifier for
    this L and model; `test_rows` (with `prove_rounds`): prove settlement too, on a test chunk of
    that many rows (fedmarket/zk/settlement_proof.py). Circuits are built and verifiers deployed
    once per circuit and chain. `terms`: the other MarketSpec fields."""
    platform = current_platform()
    if test_rows is not None and not prove_rounds:
        raise ConfigError("a proven settlement needs proven rounds: its proof binds their Poseidon commitments")
    task = TaskSpec(model=ModelConfig(kind=kind), training=TrainingConfig.for_model(kind), test_chunk_rows=test_rows)
    require_valid(check_dataset(data.features, data.labels, task.data_schema, dataset="owner"))
    raw = encode_dataset(data)
    data_commitment = commit(raw)
    if prove_rounds:
        terms["round_verifier"] = _round_verifier(owner, task, terms["trainers"])
    if test_rows is not None:
        chunks, terms["settlement_verifier"] = _settlement_verifier(owner, task, data, terms["trainers"], test_rows)
        data_commitment = chunks.commitment
    spec = MarketSpec(
        task_cid=str(platform.store.put(task.model_dump_json().encode())),
        data_cid=str(platform.store.put(raw)),
        data_commitment=data_commitment,
        **terms,
    )
    if platform.settings.factory_address:
        factory = FactoryClient(platform.chain, platform.settings.factory_address)
    else:
        factory, _ = FactoryClient.deploy(platform.chain, owner.account)
    market, created = factory.create_market(owner.account, spec, spec.max_payout())
    return Published(market, created, factory, task)


def _round_verifier(owner: Party, task: TaskSpec, trainers: int) -> str:
    from fedmarket.zk import build_round_circuit
    from fedmarket.zk.deploy import deploy_round_verifier

    platform = current_platform()
    build = build_round_circuit(trainers, parameter_count(task.model), platform.settings)
    return deploy_round_verifier(platform.chain, owner.account, build, trainers).adapter


def _settlement_verifier(owner: Party, task: TaskSpec, data: Dataset, trainers: int, rows: int):
    """(the owner's chunk commitments, the settlement verifier's address)."""
    from fedmarket.zk.deploy import deploy_settlement_verifier
    from fedmarket.zk.settlement_proof import DataChunks, build_settlement_circuit

    platform = current_platform()
    chunks = DataChunks.of(data, rows, task.model.classes)
    build = build_settlement_circuit(trainers, task.model, rows, platform.settings)
    return chunks, deploy_settlement_verifier(platform.chain, owner.account, build, trainers, rows).adapter


def create_market(
    data_file: Path, aggregator: str, aggregator_key: str, *, trainers: int, rounds: int, model: str,
    participation_reward_wei: int, aggregator_fee_wei: int, round_duration_s: int, reveal_window_s: int,
    prove_rounds: bool = False, test_rows: int | None = None,
) -> dict:
    if not Path(data_file).is_file():
        raise ConfigError(f"owner data file {data_file} does not exist")
    published = publish_market(
        current_platform().me, decode_dataset(Path(data_file).read_bytes()), ModelKind(model),
        aggregator=aggregator, aggregator_key=aggregator_key, trainers=trainers, rounds=rounds,
        round_duration_s=round_duration_s, reveal_window_s=reveal_window_s,
        participation_reward_wei=participation_reward_wei, aggregator_fee_wei=aggregator_fee_wei,
        schedule=DEFAULT_SCHEDULE, prove_rounds=prove_rounds, test_rows=test_rows,
    )
    market, tx = published.market, published.created
    return {"market": market.address, "factory": published.factory.address, "deposit": market.deposit(), "tx": tx.tx_hash,
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
