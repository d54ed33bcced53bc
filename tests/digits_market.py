"""A digits market on a node, straight through the bindings, and rounds of updates submitted to
it as trainers would: shared by the tests that break a round (tests/test_resume.py,
tests/test_faults.py)."""

from __future__ import annotations

import numpy as np

from fedmarket.chain import FactoryClient, MarketClient
from fedmarket.commitments import commit
from fedmarket.context import Platform
from fedmarket.identity import Party
from fedmarket.ml.data import encode_dataset, load_digits_dataset, owner_split
from fedmarket.ml.training import initial_model
from fedmarket.simulation.enrol import enrol
from fedmarket_flows.market import open_next_round
from fedmarket_schemas.market import MarketSpec, ModelConfig, RewardSchedule, TaskSpec
from fedmarket_tasks.trainer import seal_and_store
from tests.helpers import party


def digits_market(
    platform: Platform, name: str, *, trainers: int, rounds: int, factory: FactoryClient | None = None
) -> tuple[MarketClient, Party, list[Party], TaskSpec]:
    """An LR digits market in Training, its trainers registered and revealed (parties `name-*`),
    created through `factory` (default: a new one)."""
    owner, aggregator = party(platform, f"{name}-owner"), party(platform, f"{name}-aggregator")
    members = [party(platform, f"{name}-trainer", i) for i in range(trainers)]
    task = TaskSpec(model=ModelConfig())
    _, owner_data = owner_split(load_digits_dataset(), owner_fraction=0.3, seed=1)
    data = encode_dataset(owner_data)
    spec = MarketSpec(
        task_cid=str(platform.store.put(task.model_dump_json().encode())),
        data_cid=str(platform.store.put(data)),
        data_commitment=commit(data),
        aggregator=aggregator.address,
        aggregator_key="0x" + aggregator.public_box_key.hex(),
        trainers=trainers,
        rounds=rounds,
        participation_reward_wei=10**15,
        schedule=RewardSchedule(thresholds_bps=(5000,), pools_wei=(10**17,)),
    )
    factory = factory or FactoryClient.deploy(platform.chain, owner.account)[0]
    market, _ = factory.create_market(owner.account, spec, spec.max_payout())
    enrol(market, members, str(platform.store.put(b'{"summary": "ok"}')))
    return market, aggregator, members, task


def submit_round(market: MarketClient, aggregator: Party, trainers: list[Party], task: TaskSpec, round: int):
    """Open `round` and submit a sealed update of every trainer, each near the initial model;
    returns the updates, one row per trainer."""
    open_next_round(market.address, aggregator.address)
    rng = np.random.default_rng(round)
    start = initial_model(task.model, seed=task.init_seed)
    locals_ = []
    for t in trainers:
        locals_.append(start + rng.normal(0, 0.01, size=start.shape))
        cid, commitment = seal_and_store(market.address, t.address, round, locals_[-1], task)
        market.submit(t.account, round, cid, commitment)
    return np.stack(locals_)
