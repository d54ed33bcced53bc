"""Gas of every market operation, measured on a real EVM with real sealed updates.

One market per (L, parameters): L trainers register and reveal, two rounds run with real updates
of the given size (encoded, sealed to the aggregator, stored by CID, committed), one trainer's
submission is excluded from round 1 (one `exclude` call), then settlement and every withdrawal.
The secure-aggregation board's steps run alongside: every trainer posts its real key bundle before
round 1, and after round 1's exclusion the aggregator opens the reveals and every trainer reveals.
Only commitments and CIDs go on chain, so the per-round gas must not depend on the model size;
each row carries its target.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from eth_utils import keccak
from pydantic import BaseModel

from fedmarket.chain import FactoryClient, account_from_key
from fedmarket.commitments import commit
from fedmarket.context import Platform
from fedmarket.crypto import SealContext, private_key_from_bytes, seal
from fedmarket.identity import Party
from fedmarket.ml.models import parameter_count
from fedmarket.ml.updates import encode_update
from fedmarket.secagg import onchain
from fedmarket.settings import Settings, load_settings
from fedmarket_schemas.market import MarketSpec, ModelConfig, RewardSchedule
from fedmarket_schemas.rounds import ExclusionReason, Rejection

ROUNDS = 2
ETHER = 10**18


class GasRow(BaseModel):
    op: str
    trainers: int
    params: int
    gas: int
    target: int | None = None

    @property
    def within_target(self) -> bool | None:
        return None if self.target is None else self.gas <= self.target


def model_with(params: int) -> ModelConfig:
    """A logistic-regression task with exactly `params` parameters (10 classes)."""
    if params % 10 != 0 or params < 20:
        raise ValueError(f"--params must be a multiple of 10 and at least 20, got {params}")
    config = ModelConfig(in_features=params // 10 - 1, classes=10)
    assert parameter_count(config) == params
    return config


def funded_party(platform: Platform, role: str, index: int = 0) -> Party:
    material = f"bench-gas/{role}/{index}".encode()
    party = Party(role, account_from_key(keccak(material + b"/eth")), private_key_from_bytes(keccak(material + b"/x")))
    platform.chain.fund(party.address, 10 * ETHER)  # 130 parties within a dev node's 10,000 ether
    return platform.add(party)


def measure(trainers: int, params: int, settings: Settings | None = None) -> list[GasRow]:
    with tempfile.TemporaryDirectory() as tmp:
        base = settings or load_settings()
        platform = Platform.from_settings(base.model_copy(update={"store_dir": Path(tmp) / "blocks"}))
        return _measure(platform, trainers, params)


def _measure(platform: Platform, trainers: int, params: int) -> list[GasRow]:
    model = model_with(params)
    rng = np.random.default_rng(params + trainers)
    chain, store = platform.chain, platform.store
    owner, aggregator = funded_party(platform, "owner"), funded_party(platform, "aggregator")
    members = [funded_party(platform, "trainer", i) for i in range(trainers)]
    spec = MarketSpec(
        task_cid=str(store.put(model.model_dump_json().encode())),
        data_cid=str(store.put(b"owner data")),
        data_commitment=commit(b"owner data"),
        aggregator=aggregator.address,
        aggregator_key="0x" + aggregator.public_box_key.hex(),
        trainers=trainers,
        rounds=ROUNDS,
        participation_reward_wei=10**15,
        aggregator_fee_wei=10**16,
        schedule=RewardSchedule(thresholds_bps=(5000, 9000), pools_wei=(10**17, 10**18)),
    )
    factory, _ = FactoryClient.deploy(chain, owner.account)
    market, created = factory.create_market(owner.account, spec, spec.max_payout())
    gas: dict[str, list[int]] = {"createMarket": [created.gas_used]}

    summary = str(store.put(b'{"rows": 100, "passed": true}'))
    for t in members:
        gas.setdefault("register", []).append(
            market.register(t.account, t.public_box_key, t.split_seed(market.address), summary).gas_used
        )
    for t in members:
        gas.setdefault("reveal", []).append(market.reveal(t.account, t.split_seed(market.address)).gas_used)

    # the secure-aggregation board: every trainer deals its real key bundle before round 1
    board = factory.secure_aggregation()
    gas["postKeys"] = [onchain.post_bundle(store, market, board, t, rounds=ROUNDS)[1].gas_used for t in members]
    if trainers > 1:  # a complaint against trainer 0's shares (false here) and trainer 0's answer
        gas["complain"] = [board.complain(members[1].account, market.address, 0).gas_used]
        gas["answer"] = [tx.gas_used for tx in onchain.answer_complaints(store, market, board, members[0])]

    model_bytes = encode_update(np.zeros(params), model)
    for r in range(1, ROUNDS + 1):
        round_gas = market.open_round(aggregator.account, str(store.put(model_bytes)), commit(model_bytes)).gas_used
        gas.setdefault("openRound", []).append(round_gas)
        for t in members:
            plaintext = encode_update(rng.normal(size=params), model)
            envelope = seal(
                plaintext,
                sender=t.box_key,
                recipient=aggregator.public_box_key,
                context=SealContext(chain.chain_id, market.address, r, t.address),
            )
            used = market.submit(t.account, r, str(store.put(envelope)), commit(plaintext)).gas_used
            gas.setdefault("submit", []).append(used)
            round_gas += used
        mask = (1 << trainers) - 1
        if r == 1 and trainers > 1:
            mask &= ~1  # trainer 0 left out of round 1: its submission excluded, with its key as evidence
            unusable = Rejection(reason=ExclusionReason.DOES_NOT_OPEN, detail="bench", key="0x" + "5a" * 32)
            gas["exclude"] = [market.exclude(aggregator.account, r, {0: unusable}).gas_used]
        if r == 1:  # the reveal step of a secure-aggregation round, after the exclusion
            gas["openReveals"] = [board.open_reveals(aggregator.account, market.address, r).gas_used]
            gas["revealShares"] = [onchain.reveal(store, market, board, t, r)[1].gas_used for t in members]
        aggregate = encode_update(rng.normal(size=params), model)
        used = market.finalize_round(aggregator.account, r, str(store.put(aggregate)), commit(aggregate), mask).gas_used
        gas.setdefault("finalizeRound", []).append(used)
        gas.setdefault("round_total", []).append(round_gas + used)

    contributions = [int(v) for v in rng.integers(-(10**6), 10**7, size=trainers)]
    settled = market.settle(aggregator.account, 9500, contributions).gas_used
    for party in [*members, aggregator, owner]:
        if market.owed(party.address):
            gas.setdefault("withdraw", []).append(market.withdraw(party.account).gas_used)
    if market.balance() != 0:
        raise AssertionError(f"market still holds {market.balance()} wei after every withdrawal")

    def row(op: str, value: int, target: int | None = None) -> GasRow:
        return GasRow(op=op, trainers=trainers, params=params, gas=int(value), target=target)

    return [
        row("createMarket", gas["createMarket"][0]),
        row("register", np.mean(gas["register"])),
        row("reveal", np.mean(gas["reveal"])),
        row("openRound", np.mean(gas["openRound"])),
        row("submit", max(gas["submit"]), 60_000),  # the worst submission, not the mean
        row("finalizeRound", max(gas["finalizeRound"]), 60_000 + 3_000 * trainers),
        *([row("exclude", gas["exclude"][0])] if "exclude" in gas else []),
        row("round_total", np.mean(gas["round_total"])),
        row("postKeys", max(gas["postKeys"])),
        *([row("complain", gas["complain"][0]), row("answer", gas["answer"][0])] if "complain" in gas else []),
        row("openReveals", gas["openReveals"][0]),
        row("revealShares", max(gas["revealShares"]), 60_000),  # a trainer's per-round extra, like submit
        row("settle", settled),
        row("settle_per_trainer", settled / trainers, 30_000),
        row("withdraw", np.mean(gas["withdraw"])),
    ]


def run(trainers: list[int], params: list[int], settings: Settings | None = None) -> list[GasRow]:
    return [row for n in trainers for p in params for row in measure(n, p, settings)]


def round_gas_spread(rows: list[GasRow]) -> dict[int, float]:
    """Per L: (max - min) / min of the per-round gas across model sizes. Only calldata differs
    (a zero byte of a CID or commitment costs 4 gas, another byte 16), so this stays near 0."""
    totals: dict[int, list[int]] = {}
    for r in rows:
        if r.op == "round_total":
            totals.setdefault(r.trainers, []).append(r.gas)
    return {n: (max(v) - min(v)) / min(v) for n, v in totals.items()}
