"""The project owner's flow (`fedmarket owner create`): a market created from the owner's data
file, with this process's key as the owner."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from fedmarket.context import current_platform
from fedmarket.errors import ConfigError
from fedmarket.ml.formats import load_dataset
from fedmarket_schemas.market import Aggregation, DataSchema, DifferentialPrivacy, TrainingConfig, model_choice
from fedmarket_tasks.owner import DEFAULT_SCHEDULE, publish_market
from fedmarket_tasks.report import tag_run


@flow(name="fedmarket-owner-create", flow_run_name="create-market")
def create_market_flow(
    data_file: Path,
    aggregator: str,
    aggregator_key: str,
    *,
    trainers: int,
    rounds: int,
    model: str,
    participation_reward_wei: int,
    trainer_bond_wei: int,
    aggregator_fee_wei: int,
    round_duration_s: int,
    reveal_window_s: int,
    prove_rounds: bool = False,
    test_rows: int | None = None,
    round_inputs: str | None = None,
    round_chunks: int | None = None,
    settlement_parts: int | None = None,
    data_schema: DataSchema | None = None,
    training: dict | None = None,
    privacy: DifferentialPrivacy | None = None,
    aggregation: Aggregation = Aggregation.plain,
    norm_bound: float | None = None,
) -> dict:
    """`round_inputs`: kzg or poseidon, how a proven round binds its models, `round_chunks` in how
    many parameter chunks it is proven, `settlement_parts` in how many proofs each round's test
    chunk is (publish_market);
    `training`: TrainingConfig fields that replace the model's defaults; `privacy`: DP-SGD
    every trainer must train with; `aggregation`: secure, for masked updates (fedmarket/secagg),
    with `norm_bound` the update norm each trainer proves."""
    if not Path(data_file).exists():
        raise ConfigError(f"owner data file {data_file} does not exist")
    kind, module = model_choice(model)
    published = publish_market(
        current_platform().me.address,
        load_dataset(data_file, data_schema or DataSchema()),
        kind,
        module=module,
        schema=data_schema,
        aggregator=aggregator,
        aggregator_key=aggregator_key,
        trainers=trainers,
        rounds=rounds,
        round_duration_s=round_duration_s,
        reveal_window_s=reveal_window_s,
        participation_reward_wei=participation_reward_wei,
        trainer_bond_wei=trainer_bond_wei,
        aggregator_fee_wei=aggregator_fee_wei,
        schedule=DEFAULT_SCHEDULE,
        prove_rounds=prove_rounds,
        test_rows=test_rows,
        round_inputs=round_inputs,
        round_chunks=round_chunks,
        settlement_parts=settlement_parts,
        training=TrainingConfig.for_model(kind, **(training or {})),
        privacy=privacy,
        aggregation=aggregation,
        norm_bound=norm_bound,
    )
    market, tx = published.market, published.created
    tag_run("owner", market.address)
    get_run_logger().info("created market %s (deposit %d wei) in %s", market.address, market.deposit(), tx.tx_hash)
    return {
        "market": market.address,
        "factory": published.factory.address,
        "deposit": market.deposit(),
        "tx": tx.tx_hash,
        "block": tx.block_number,
    }
