"""The demo: one whole market on the embedded defaults, playing the project owner, L trainers
(some malicious: random noise, sign flip, scaled update, or any registered attack, garbage
uploads included) and the aggregator in one process; with `prove`, every round and the
settlement are proven and verified on chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from eth_utils import keccak
from prefect import flow, get_run_logger
from pydantic import BaseModel, Field, model_validator

from fedmarket.chain import account_from_key
from fedmarket.context import Platform, current_platform
from fedmarket.crypto import private_key_from_bytes
from fedmarket.errors import SecureAggregationError
from fedmarket.identity import Party
from fedmarket.ml.data import (
    Dataset,
    load_digits_dataset,
    owner_split,
    split_trainers,
)
from fedmarket.ml.formats import profile, read_table, to_dataset
from fedmarket.ml.privacy import for_budget
from fedmarket.ml.updates import decode_update
from fedmarket.simulation.attacks import ATTACKS, DEMO_ATTACKS, AttackContext, default_attack_plan
from fedmarket_flows.market import market_flow
from fedmarket_schemas.market import Aggregation, DataSchema, ModelKind, RewardSchedule, TrainingConfig
from fedmarket_schemas.rounds import RoundReport
from fedmarket_tasks.chain_ops import submit_update, withdraw
from fedmarket_tasks.owner import DEFAULT_SCHEDULE, ETHER, publish_market
from fedmarket_tasks.secure import check_keys, mask_and_store, post_keys, reveal_shares
from fedmarket_tasks.store_ops import get_bytes, put_bytes
from fedmarket_tasks.trainer import check_local_data, privacy_after, register, reveal_seed, seal_and_store, train

Progress = Callable[[str, dict], None]


class DemoConfig(BaseModel):
    trainers: int = Field(8, ge=3, le=64)
    malicious: int = Field(3, ge=0)
    attacks: tuple[str, ...] = Field(DEMO_ATTACKS, min_length=1, description="attacks, round robin over attackers")
    prove: bool = Field(False, description="prove every round and the settlement (verifiers on chain)")
    test_rows: int = Field(20, gt=0, description="with prove: rows of the test chunk the settlement proof scores")
    rounds: int = Field(5, ge=1)
    model: ModelKind = ModelKind.lr
    module: str | None = Field(None, description="with model module: the owner's 'package.module:Class'")
    data: str = Field(
        "digits", description="a data file or folder (fedmarket.ml.formats), or digits | breast_cancer | wine"
    )
    label_column: str = "label"
    split: Literal["iid", "dirichlet"] = "iid"
    dirichlet_alpha: float = Field(0.5, gt=0)
    seed: int = 0
    owner_fraction: float = Field(0.3, gt=0, lt=1)
    aggregation: Aggregation = Field(
        Aggregation.plain, description="secure: trainers mask their updates, only the survivors' mean is opened"
    )
    norm_bound: float | None = Field(
        None, gt=0, description="with secure aggregation: the update norm every trainer proves (and clips to)"
    )
    dp_epsilon: float | None = Field(
        None, gt=0, description="every trainer trains with DP-SGD within this epsilon over the whole market"
    )
    batch_size: int | None = Field(None, gt=0, description="trainers' batch size; unset: the model's default")
    learning_rate: float | None = Field(None, gt=0, description="unset: the model's default")
    local_epochs: int | None = Field(None, gt=0, description="epochs each trainer trains a round, at least; unset: 5")
    min_local_steps: int | None = Field(None, ge=0, description="SGD steps each trainer takes a round, at least")

    def training(self) -> TrainingConfig:
        overrides = {
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "local_epochs": self.local_epochs,
            "min_local_steps": self.min_local_steps,
        }
        return TrainingConfig.for_model(self.model, **{k: v for k, v in overrides.items() if v is not None})

    participation_reward_wei: int = ETHER // 100
    trainer_bond_wei: int = ETHER // 100
    aggregator_fee_wei: int = ETHER // 20
    schedule: RewardSchedule = DEFAULT_SCHEDULE

    @model_validator(mode="after")
    def _honest_majority(self) -> DemoConfig:
        if self.malicious * 2 >= self.trainers:
            raise ValueError("the outlier rules assume an honest majority: malicious < trainers / 2")
        unknown = [a for a in self.attacks if a not in ATTACKS.names()]
        if unknown:
            raise ValueError(f"unknown attack {', '.join(unknown)} (known: {', '.join(ATTACKS.names())})")
        if self.norm_bound is not None and self.aggregation != Aggregation.secure:
            raise ValueError("a norm bound is proven in secure aggregation only: add --aggregation secure")
        dealing = [a for a in self.attacks if a == "bad_shares"]
        if dealing and self.aggregation != Aggregation.secure:
            raise ValueError("the bad_shares attack deals secure-aggregation keys: add --aggregation secure")
        if self.aggregation == Aggregation.secure and self.prove:
            raise ValueError("secure aggregation has no round proofs: the round circuit reads every update")
        return self


class DemoReport(BaseModel):
    market: str
    aggregator: str
    chain: str
    store: str
    deposit: int
    refund: int
    payouts: dict[str, int] = Field(description="address -> wei credited (trainers and aggregator)")
    withdrawn_total: int
    bonds: int = Field(description="trainer bonds paid at registration; each returned at its trainer's reveal")
    contract_balance_after: int
    attackers: list[str]
    attacks: dict[str, str]
    rounds: list[RoundReport]
    final_accuracy: float
    contributions: dict[str, float]
    gas: dict[str, int] = Field(description="gas per operation (mean where repeated)")
    verifier: str | None
    settlement_verifier: str | None = None
    aggregation: Aggregation = Aggregation.plain
    dp: dict | None = Field(None, description="with dp_epsilon: the task's DP-SGD terms")
    dp_epsilon: dict[str, float] = Field({}, description="trainer -> epsilon it reported spent by the end")


def _party(role: str, seed: int, index: int = 0) -> Party:
    material = f"fedmarket-demo/{seed}/{role}/{index}".encode()
    return Party(
        role=role,
        account=account_from_key(keccak(material + b"/eth")),
        box_key=private_key_from_bytes(keccak(material + b"/x25519")),
    )


def demo_data(source: str, label_column: str) -> tuple[DataSchema | None, Dataset]:
    """Digits under its own schema (intensities 0..16), any other file under the schema its
    profile proposes (the whole file's ranges and labels)."""
    if source == "digits":
        return None, load_digits_dataset()
    table = read_table(source, label_column)
    schema = profile(table)
    return schema, to_dataset(table, schema)


def _demo_run_name() -> str:
    """The demo's run named by what it runs (`demo-8t-5r-plain-seed0`), not Prefect's random name."""
    from prefect.runtime import flow_run

    config = flow_run.parameters.get("config") or {}
    c = config if isinstance(config, DemoConfig) else DemoConfig.model_validate(config)
    proven = "-proven" if c.prove else ""
    return f"demo-{c.trainers}t-{c.rounds}r-{c.aggregation.value}{proven}-seed{c.seed}"


@flow(name="fedmarket-demo", flow_run_name=_demo_run_name, validate_parameters=False)
def demo_flow(config: DemoConfig | dict | None = None, progress: Progress | None = None) -> DemoReport:
    logger = get_run_logger()
    config = config if isinstance(config, DemoConfig) else DemoConfig.model_validate(config or {})
    notify = progress or (lambda kind, payload: None)
    platform: Platform = current_platform()
    chain = platform.chain
    rng = np.random.default_rng(config.seed)

    owner = platform.add(_party("owner", config.seed))
    aggregator = platform.add(_party("aggregator", config.seed))
    trainers = [platform.add(_party("trainer", config.seed, i)) for i in range(config.trainers)]
    for party in [owner, aggregator, *trainers]:
        chain.fund(party.address, 10 * ETHER)

    # ---- project owner: data checks, task and data by CID, market with escrow
    schema, dataset = demo_data(config.data, config.label_column)
    pool, owner_data = owner_split(dataset, owner_fraction=config.owner_fraction, seed=config.seed)
    datasets = split_trainers(pool, config.trainers, split=config.split, alpha=config.dirichlet_alpha, seed=config.seed)
    privacy = None
    if config.dp_epsilon is not None:  # noise enough for the smallest share to train every round
        smallest = min(len(d.labels) for d in datasets)
        privacy = for_budget(config.dp_epsilon, config.training(), rows=smallest, rounds=config.rounds)
    market, created, _, task = publish_market(
        owner.address,
        owner_data,
        config.model,
        schema=schema,
        module=config.module,
        aggregator=aggregator.address,
        aggregator_key="0x" + aggregator.public_box_key.hex(),
        trainers=config.trainers,
        rounds=config.rounds,
        participation_reward_wei=config.participation_reward_wei,
        trainer_bond_wei=config.trainer_bond_wei,
        aggregator_fee_wei=config.aggregator_fee_wei,
        schedule=config.schedule,
        prove_rounds=config.prove,
        test_rows=config.test_rows if config.prove else None,
        training=config.training(),
        privacy=privacy,
        aggregation=config.aggregation,
        norm_bound=config.norm_bound,
    )
    deposit = market.deposit()
    gas: dict[str, list[int]] = {"createMarket": [created.gas_used]}
    notify("created", {"market": market.address, "deposit": deposit})
    logger.info("market %s created on %s with deposit %d wei", market.address, chain.description, deposit)

    # ---- trainers: local data checks, registration
    attacker_index = sorted(rng.choice(config.trainers, size=config.malicious, replace=False).tolist())
    plan = dict(zip(attacker_index, default_attack_plan(config.malicious, config.attacks)))
    for index, name in plan.items():  # data-poisoning attacks change the attacker's own labels
        data = datasets[index]
        datasets[index] = Dataset(data.features, ATTACKS.get(name).poison_labels(data.labels, task.model.classes))
    for trainer, data in zip(trainers, datasets):
        summary = check_local_data(trainer.address, data, task)
        gas.setdefault("register", []).append(register(market.address, trainer.address, summary).gas_used)
        notify("registered", {"trainer": trainer.address})
    for trainer in trainers:  # commit-reveal: every seed is committed before any is revealed
        tx = reveal_seed(market.address, trainer.address)
        gas.setdefault("reveal", []).append(tx.gas_used if tx else 0)

    # ---- each round: trainers download the global model, train, seal (or mask), store, submit
    submitted: dict[int, np.ndarray] = {}
    secure = config.aggregation == Aggregation.secure

    def play_trainers(round: int) -> None:
        global_model = decode_update(get_bytes(market.model_cid(round)), task.model)
        locals_ = [
            train(
                trainer.address,
                round,
                global_model,
                data,
                task,
                seed=config.seed * 10_000 + round * 100 + index,
                trained_before=round - 1,
            )
            for index, (trainer, data) in enumerate(zip(trainers, datasets))
        ]
        honest = np.stack([m for i, m in enumerate(locals_) if i not in plan])
        for index, trainer in enumerate(trainers):
            local = locals_[index]
            attack = ATTACKS.get(plan[index]) if index in plan else None
            if attack is not None:
                context = AttackContext(
                    local,
                    global_model,
                    honest,
                    submitted.get(index),
                    config.trainers,
                    config.malicious,
                    rng,
                    index=sorted(plan).index(index),
                )
                local = submitted[index] = attack.craft(context)
            privacy = privacy_after(task, datasets[index], round - 1)
            if secure:
                try:
                    cid, commitment = mask_and_store(market.address, trainer.address, round, local, task, privacy)
                except SecureAggregationError:  # its keys sit the round out (unmet complaints): what it
                    # submits is excluded, MaskedMalformed
                    cid, commitment = seal_and_store(market.address, trainer.address, round, local, task, privacy)
            else:
                cid, commitment = seal_and_store(market.address, trainer.address, round, local, task, privacy)
            if attack is not None and attack.on_chain:
                cid = put_bytes(attack.upload(get_bytes(cid)))
            gas.setdefault("submit", []).append(
                submit_update(market.address, trainer.address, round, cid, commitment).gas_used
            )

    def post_keys_all() -> None:  # secure aggregation: every trainer's key bundle, before round 1
        for index, trainer in enumerate(trainers):
            if (tx := post_keys(market.address, trainer.address, plan.get(index))) is not None:
                gas.setdefault("postKeys", []).append(tx.gas_used)
        for index, trainer in enumerate(trainers):  # each checks its shares of every bundle and answers
            answers = index not in plan or ATTACKS.get(plan[index]).answers_complaints
            for tx in check_keys(market.address, trainer.address, answers):
                gas.setdefault("complain/answer", []).append(tx.gas_used)

    def reveal_all(round: int) -> None:  # and each round, every holder's shares
        for trainer in trainers:
            if (tx := reveal_shares(market.address, trainer.address, round)) is not None:
                gas.setdefault("revealShares", []).append(tx.gas_used)

    def round_done(report: RoundReport) -> None:
        notify("round", report.model_dump())

    reports, settlement = market_flow(
        market.address,
        aggregator.address,
        play_trainers,
        round_done,
        key_step=post_keys_all if secure else None,
        reveal_step=reveal_all if secure else None,
    )
    gas["settle"] = [settlement.gas_used]
    notify("settled", settlement.model_dump())

    # ---- everyone withdraws (the settlement flow already took the aggregator's fee); the contract
    # must hold exactly what is still owed after each one
    for party in [*trainers, aggregator, owner]:
        if market.owed(party.address) == 0:
            continue
        tx = withdraw(market.address, party.address)
        gas.setdefault("withdraw", []).append(tx.gas_used)
        if market.balance() != market.total_owed():
            raise AssertionError(f"contract balance {market.balance()} != owed {market.total_owed()}")
        notify("withdrawn", {"account": party.address})
    withdrawn = sum(log["args"]["amount"] for log in market.events("Withdrawn"))

    return DemoReport(
        market=market.address,
        aggregator=aggregator.address,
        chain=chain.description,
        store=platform.store.name,
        deposit=market.deposit(),
        refund=settlement.refund_wei,
        payouts={p.account: p.wei for p in settlement.payouts},
        withdrawn_total=withdrawn,
        bonds=market.trainer_bond() * config.trainers,
        contract_balance_after=market.balance(),
        attackers=[trainers[i].address for i in attacker_index],
        attacks={trainers[i].address: plan[i] for i in attacker_index},
        rounds=reports,
        final_accuracy=settlement.final_accuracy,
        contributions=settlement.contributions,
        dp=task.training.dp.model_dump() if task.training.dp else None,
        dp_epsilon=settlement.dp_epsilon,
        gas={
            "createMarket": gas["createMarket"][0],
            "register": int(np.mean(gas["register"])),
            "reveal": int(np.mean(gas["reveal"])),
            "submit": int(np.mean(gas["submit"])),
            "openRound": int(np.mean([r.gas_by_call["openRound"] for r in reports])),
            "finalizeRound": int(np.mean([r.gas_by_call["finalizeRound"] for r in reports])),
            **_mean_gas(reports, "exclude"),
            **_mean_gas(reports, "openReveals"),
            **{call: int(np.mean(gas[call])) for call in ("postKeys", "revealShares") if call in gas},
            "settle": gas["settle"][0],
            "withdraw": int(np.mean(gas.get("withdraw", [0]))),
        },
        verifier=market.round_verifier(),
        settlement_verifier=market.settlement_verifier(),
        aggregation=config.aggregation,
    )


def _mean_gas(reports: list[RoundReport], call: str) -> dict[str, int]:
    """{call: mean gas over the rounds that made it}, or {} when none did."""
    used = [r.gas_by_call[call] for r in reports if call in r.gas_by_call]
    return {call: int(np.mean(used))} if used else {}
