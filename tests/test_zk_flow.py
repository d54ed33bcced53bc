"""A market whose rounds and settlement are proven, run through the round and settlement flows
(tiny task: logistic regression on 3 features and 2 classes, d = 8, L = 4 trainers, test chunks of
10 rows; the session's circuits): trainers round their updates onto the grid and commit with
Poseidon, the flows prove every round and the settlement, and the market verifies each on chain;
an attacker is flagged by the proven rule and paid nothing. A market that proves its rounds only
commits under the KZG round circuit instead."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from pydantic import ValidationError

import fedmarket_flows.round as round_module
from fedmarket.audit import audit_market
from fedmarket.chain import FactoryClient, MarketLedger
from fedmarket.context import Platform, use_platform
from fedmarket.crypto import SealContext, seal
from fedmarket.errors import ProtocolError, VerifierMismatchError, ZKError
from fedmarket.fixed_point import STEP, quantize
from fedmarket.ml.data import Dataset, encode_dataset
from fedmarket.ml.training import train_local
from fedmarket.ml.updates import decode_update, encode_update
from fedmarket.settings import Settings
from fedmarket.zk import model_commitment
from fedmarket.zk.ezkl.deploy import deploy_round_verifier, deploy_settlement_verifier
from fedmarket.zk.settlement_proof import MAX_SETTLEMENT_PARTS, DataChunks
from fedmarket_flows.market import open_next_round
from fedmarket_flows.round import round_flow
from fedmarket_flows.settlement import settlement_flow
from fedmarket_schemas.market import DataSchema, ModelConfig, RewardSchedule, TaskSpec, TrainingConfig
from fedmarket_tasks.trainer import check_market, seal_and_store
from tests.helpers import assert_ledger_matches, create_market, party, verifier_factory
from tests.kill_round import KILLED, run_killed

L, ROUNDS = 4, 2
TASK = TaskSpec(
    name="tiny",
    model=ModelConfig(in_features=3, classes=2),
    training=TrainingConfig(local_epochs=1, learning_rate=0.5),
    data_schema=DataSchema(feature_count=3, labels=(0, 1)),
    test_chunk_rows=20,
    test_chunk_parts=2,  # each round's 20 test rows in two proofs of the session's 10-row circuit
    detector="two_stage_proven",
    contribution="rloo_round_counts",
)
ONE_PART = TASK.model_copy(update={"test_chunk_rows": 10, "test_chunk_parts": 1})  # one proof per round


def tiny_data(rows: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    features = rng.integers(0, 17, size=(rows, 3)).astype(np.float32)  # digits-like intensities
    return Dataset(features, (features[:, 0] + features[:, 1] > 16).astype(np.int64))


@pytest.fixture
def proven_platform(tmp_path, hashed_round_build, anvil_url):
    """On anvil (conftest.reverted_after says why), with the session's circuits."""
    settings = Settings(
        store_dir=tmp_path / "blocks", zk_cache_dir=hashed_round_build.dir.parent, chain_rpc_url=anvil_url
    )
    p = Platform.from_settings(settings)
    with use_platform(p):
        yield p


def owner_terms(aggregator, **overrides) -> dict:
    """publish_market's terms for a one-round proven market of the tiny task, paying nothing."""
    terms = dict(
        aggregator=aggregator.address,
        aggregator_key="0x" + aggregator.public_box_key.hex(),
        trainers=L,
        rounds=1,
        participation_reward_wei=0,
        schedule=RewardSchedule(thresholds_bps=(0,), pools_wei=(0,)),
        schema=TASK.data_schema,
        prove_rounds=True,
    )
    return {**terms, **overrides}


def proven_market(platform, round_build, settlement_build, task=TASK):
    """A market of L trainers (registered, seeds revealed) whose rounds are proven by `round_build`,
    and its settlement by `settlement_build` (10 rows a proof, `task`'s parts) unless None."""
    factory, deployer = verifier_factory(platform)
    verifier = deploy_round_verifier(factory, deployer.account, round_build, L)
    proven_settlement = {}
    if settlement_build is not None:
        parts = task.test_chunk_parts
        deployed = deploy_settlement_verifier(factory, deployer.account, settlement_build, L, 10, parts=parts)
        proven_settlement["settlement_verifier"] = deployed.adapter
    owner_data = tiny_data(60, 0)
    market, _, aggregator, members, _ = create_market(
        platform,
        trainers=L,
        rounds=ROUNDS,
        task_cid=str(platform.store.put(task.model_dump_json().encode())),
        data_cid=str(platform.store.put(encode_dataset(owner_data))),
        data_commitment=DataChunks.of(
            owner_data, 10 * task.test_chunk_parts, task.model, ROUNDS, parts=task.test_chunk_parts
        ).commitment,
        round_verifier=verifier.adapter,
        factory=factory,
        **proven_settlement,
    )
    return market, aggregator, members, verifier.adapter, proven_settlement.get("settlement_verifier")


def test_every_round_and_the_settlement_of_a_proven_market_are_verified_on_chain(
    proven_platform, hashed_round_build, settlement_build
):
    platform = proven_platform
    market, aggregator, members, verifier, settlement_verifier = proven_market(
        platform, hashed_round_build, settlement_build
    )
    datasets = [tiny_data(60, 10 + i) for i in range(L)]
    for round in range(1, ROUNDS + 1):
        assert open_next_round(market.address, aggregator.address) == round
        start = decode_update(platform.store.get(market.model_cid(round)), TASK.model)
        submitted = []
        for i, (member, data) in enumerate(zip(members, datasets)):
            local = train_local(start, data, TASK.model, TASK.training, seed=round * 10 + i)
            if i == L - 1:
                local = local + 5.0  # far from every honest model: the rule must flag it
            cid, commitment = seal_and_store(market.address, member.address, round, local, TASK)
            market.submit(member.account, round, cid, commitment)
            submitted.append(quantize(local))

        report = round_flow(market.address, round, aggregator.address)

        assert report.verified and report.verifier == verifier
        assert market.round_state(round).verified
        assert report.flagged == [members[-1].address]
        assert report.benign_mask == 0b0111
        aggregate = decode_update(platform.store.get(report.aggregate_cid), TASK.model)
        # the proven aggregate is the benign mean rounded onto the grid
        assert np.max(np.abs(aggregate - np.mean(submitted[:3], axis=0))) <= STEP / 2

    settled = settlement_flow(market.address, aggregator.address)
    assert settled.verified and settled.verifier == settlement_verifier
    assert market.phase() == "Settled"
    assert settled.contributions_onchain[-1] == 0  # flagged in every round: in no subset
    # one contribution proof per round (in two parts), and the settlement pays their sums
    proven = [market.last_event("ContributionsProven", round=r)[0] for r in range(1, ROUNDS + 1)]
    info = FactoryClient(platform.chain, market.factory()).verifier_info(settlement_verifier)
    assert (info.kind, info.samples, info.chunks) == ("settlement", 10, 2)
    sums = [sum(int(p["contributions"][i]) for p in proven) for i in range(L)]
    assert settled.contributions_onchain == sums
    payouts = {p.account: p.wei for p in settled.payouts}
    assert payouts[members[-1].address] == 0  # flagged every round: no participation reward either
    assert settled.accuracy_bps == market.last_event("Settled")[0]["accuracyBps"]

    # an auditor re-verifies every proof read-only, with instances it rebuilds from the chain
    audited = audit_market(market, platform.store)
    assert audited.passed, audited.failures()
    assert {c.name: c.status for c in audited.checks if c.name in ("rounds", "settlement")} == {
        "rounds": "pass",
        "settlement": "pass",
    }
    lying = MarketLedger.rebuild(market)  # a mask and a contribution no proof was made for
    lying.rounds[1].benign_mask, lying.contributions[0] = 0b1111, lying.contributions[0] + 1
    failed = {c.name: c.detail for c in audit_market(market, platform.store, ledger=lying).failures()}
    assert "round 1: the verifier rejects" in failed["rounds"]
    assert "round 1: the settlement verifier rejects" in failed["settlement"]
    assert "the proven rounds give" in failed["settlement"]


def counted(fn, calls: list):
    @functools.wraps(fn)  # Prefect binds a task's parameters by the wrapped signature
    def counting(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)

    return counting


def test_a_market_that_proves_its_rounds_only_commits_under_kzg(proven_platform, round_build, monkeypatch):
    """Rounds proven by the round circuit with KZG-committed inputs: the trainers' commitments are
    keccak of the points the proofs carry, every round verifies on chain, the attacker is flagged,
    the settlement is the aggregator's (unproven), and the audit re-verifies every round. Round 1's
    first run is killed while it proves."""
    platform = proven_platform
    task = TASK.model_copy(update={"test_chunk_rows": None, "test_chunk_parts": 1, "contribution": "rloo"})
    market, aggregator, members, verifier, _ = proven_market(platform, round_build, None, task)
    assert FactoryClient(platform.chain, market.factory()).verifier_info(verifier).kind == "kzg_round"
    datasets = [tiny_data(60, 10 + i) for i in range(L)]
    for round in range(1, ROUNDS + 1):
        assert open_next_round(market.address, aggregator.address) == round
        start = decode_update(platform.store.get(market.model_cid(round)), task.model)
        assert market.round_state(round).deadline and market.model_commitment() == model_commitment(round_build, start)
        for i, (member, data) in enumerate(zip(members, datasets)):
            local = train_local(start, data, task.model, task.training, seed=round * 10 + i)
            if i == L - 1:
                local = local + 5.0
            cid, commitment = seal_and_store(market.address, member.address, round, local, task)
            assert commitment == model_commitment(round_build, quantize(local))
            if i == 0 and round == 2:  # committed on the grid, sealed off it: excluded, not a stall
                context = SealContext(platform.chain.chain_id, market.address, round, member.address)
                off_grid = encode_update(quantize(local) + 2.0**-12, task.model)
                sealed = seal(off_grid, sender=member.box_key, recipient=market.aggregator_key(), context=context)
                cid = str(platform.store.put(sealed))
            market.submit(member.account, round, cid, commitment)
        if round == 1:  # the worker's run dies while it proves: the next run proves again, sends once
            killed = run_killed("prove", market.address, round, platform.settings, aggregator)
            assert killed.returncode == KILLED, killed.stdout + killed.stderr
            assert not market.round_state(round).finalized
            proofs: list = []
            monkeypatch.setattr(round_module.prove_round_step, "fn", counted(round_module.prove_round_step.fn, proofs))
        report = round_flow(market.address, round, aggregator.address)
        if round == 1:
            monkeypatch.undo()
            assert proofs == [1] and len(market.events("RoundFinalized", round=1)) == 1
        assert report.verified and market.round_state(round).verified
        assert report.flagged == sorted({members[-1].address} | ({members[0].address} if round == 2 else set()))
        assert report.benign_mask == (0b0111 if round == 1 else 0b0110)
    assert "grid" in report.flag_reasons[members[0].address] and market.excluded_mask(2) == 0b0001

    settled = settlement_flow(market.address, aggregator.address)
    assert not settled.verified and market.phase() == "Settled"
    assert {p.account: p.wei for p in settled.payouts}[members[-1].address] == 0
    audited = audit_market(market, platform.store)
    assert audited.passed, audited.failures()
    assert {c.name: c.status for c in audited.checks}["rounds"] == "pass"


def test_unusable_submissions_are_excluded_and_the_proven_market_settles(
    proven_platform, hashed_round_build, settlement_build
):
    """No trainer can stall a proven market: trainer 1 uploads a sealed update whose ciphertext
    does not open, every round; trainer 2 is honest in round 1 and replays that round's ciphertext
    in round 2; trainer 0 seals its update off the grid in round 2. Each is excluded on chain with
    its reason and evidence, absent from that round's proof; the rounds and the settlement are
    proven and verified; the excluded earn nothing for those rounds; funds are conserved; an
    auditor re-checks every exclusion from its evidence."""
    platform = proven_platform
    market, aggregator, members, _, _ = proven_market(platform, hashed_round_build, settlement_build, ONE_PART)
    datasets = [tiny_data(60, 10 + i) for i in range(L)]
    cids: dict[int, str] = {}
    for round in range(1, ROUNDS + 1):
        open_next_round(market.address, aggregator.address)
        start = decode_update(platform.store.get(market.model_cid(round)), TASK.model)
        for i, (member, data) in enumerate(zip(members, datasets)):
            local = train_local(start, data, TASK.model, TASK.training, seed=round * 10 + i)
            cid, commitment = seal_and_store(market.address, member.address, round, local, TASK)
            if i == 1:  # garbage: a well-formed envelope whose ciphertext does not open
                raw = bytearray(platform.store.get(cid))
                raw[-1] ^= 1
                cid = str(platform.store.put(bytes(raw)))
            if i == 2 and round == 2:  # its round-1 bytes again
                cid = cids[2]
            if i == 0 and round == 2:  # committed on the grid, sealed off it
                context = SealContext(platform.chain.chain_id, market.address, round, member.address)
                off_grid = encode_update(quantize(local) + 2.0**-12, TASK.model)
                sealed = seal(off_grid, sender=member.box_key, recipient=market.aggregator_key(), context=context)
                cid = str(platform.store.put(sealed))
            cids[i] = cid
            market.submit(member.account, round, cid, commitment)

        report = round_flow(market.address, round, aggregator.address)
        assert report.verified and market.round_state(round).verified
        excluded = {1: "DoesNotOpen"} if round == 1 else {0: "MalformedUpdate", 1: "DoesNotOpen", 2: "Replayed"}
        assert market.excluded_mask(round) == sum(1 << i for i in excluded)
        for i, reason in excluded.items():
            assert members[i].address in report.flagged
            assert report.flag_reasons[members[i].address].startswith(f"excluded: {reason}")
        assert report.benign_mask & market.excluded_mask(round) == 0
        assert report.gas_by_call["exclude"] > 0 and report.tx_hashes["exclude"]
    assert "grid" in report.flag_reasons[members[0].address]

    settled = settlement_flow(market.address, aggregator.address)
    assert settled.verified and market.phase() == "Settled"
    payouts = {p.account: p.wei for p in settled.payouts}
    assert payouts[members[1].address] == 0  # excluded every round
    assert market.benign_rounds(2) <= 1 and market.benign_rounds(0) <= 1  # nothing for round 2
    assert payouts[members[3].address] > 0
    ledger = assert_ledger_matches(market)
    assert sum(ledger.payouts) + ledger.aggregator_fee + ledger.owner_refund == ledger.deposit

    audited = audit_market(market, platform.store)
    assert audited.passed, audited.failures()
    statuses = {c.name: c.status for c in audited.checks}
    assert statuses["exclusions"] == statuses["rounds"] == statuses["settlement"] == "pass"


def test_a_proven_market_whose_task_names_a_rule_without_circuit_is_refused(
    proven_platform, hashed_round_build, settlement_build
):
    """The task says which rule runs: a proven market's round flow refuses one no circuit proves
    instead of proving another rule than the one the owner published."""
    platform = proven_platform
    task = TASK.model_copy(update={"detector": "two_stage_guarded"})
    market, aggregator, members, _, _ = proven_market(platform, hashed_round_build, settlement_build, task)
    open_next_round(market.address, aggregator.address)
    for i, member in enumerate(members):
        cid, commitment = seal_and_store(market.address, member.address, 1, np.full(8, 0.1 * i), task)
        market.submit(member.account, 1, cid, commitment)
    with pytest.raises(ProtocolError, match="two_stage_guarded"):
        round_flow(market.address, 1, aggregator.address)
    assert not market.round_state(1).finalized


def test_a_trainer_checks_the_markets_verifiers_before_it_joins(proven_platform, hashed_round_build, settlement_build):
    """What the chain cannot check, the trainer's client does: each verifier is the factory's
    adapter over the EZKL verifier of the task's own circuit, rebuilt here; a round adapter over
    another circuit's verifier is refused by name, and so is a test chunk the task does not name."""
    platform = proven_platform
    market, *_ = proven_market(platform, hashed_round_build, settlement_build)
    checked = check_market.fn(market.address, TASK)
    assert any(line.startswith("round verifier") and hashed_round_build.dir.name in line for line in checked)
    assert any(line.startswith("settlement verifier") and settlement_build.dir.name in line for line in checked)
    with pytest.raises(ProtocolError, match="2 part\\(s\\) of 10 test rows, the task's 1 of 20"):
        check_market.fn(market.address, TASK.model_copy(update={"test_chunk_parts": 1}))
    with pytest.raises(ProtocolError, match="test rows"):
        check_market.fn(market.address, TASK.model_copy(update={"test_chunk_rows": 10, "test_chunk_parts": 1}))

    factory = FactoryClient(platform.chain, market.factory())
    deployer = party(platform, "verifier-deployer")
    other_halo2 = factory.verifier_info(market.settlement_verifier()).halo2  # another circuit's verifier
    adapter, _ = factory.deploy_round_verifier(deployer.account, other_halo2, L)
    swapped, *_ = create_market(
        platform,
        trainers=L,
        rounds=1,
        task_cid=str(platform.store.put(TASK.model_dump_json().encode())),
        round_verifier=adapter,
        factory=factory,
    )
    with pytest.raises(VerifierMismatchError):
        check_market.fn(swapped.address, TASK)


def test_the_owner_chooses_how_a_proven_round_binds_its_models(
    proven_platform, round_build, hashed_round_build, settlement_build
):
    """Poseidon inputs by default in a market that proves its rounds only, KZG on request, and
    Poseidon always with a proven settlement (KZG with it is refused by name); a settlement's test
    chunk in parts on request."""
    from fedmarket.errors import ConfigError
    from fedmarket.market_context import task_spec
    from fedmarket_schemas.market import ModelKind
    from fedmarket_tasks.owner import publish_market

    platform = proven_platform
    owner, aggregator = party(platform, "owner"), party(platform, "aggregator")
    terms = owner_terms(aggregator)
    data = tiny_data(60, 0)
    for inputs, kind, build in ((None, "round", hashed_round_build), ("kzg", "kzg_round", round_build)):
        market = publish_market(owner.address, data, ModelKind.lr, round_inputs=inputs, **terms).market
        info = FactoryClient(platform.chain, market.factory()).verifier_info(market.round_verifier())
        checked = check_market.fn(market.address, task_spec(market, platform.store))
        assert info.kind == kind and checked[1].endswith(f"EZKL build {build.dir.name} at {info.halo2}")
    with pytest.raises(ConfigError, match="reads Poseidon commitments"):
        publish_market(owner.address, data, ModelKind.lr, round_inputs="kzg", test_rows=10, **terms)
    # 20 test rows per round in two proofs of the 10-row circuit: the owner commits to every part
    parted = publish_market(owner.address, data, ModelKind.lr, test_rows=20, settlement_parts=2, **terms)
    info = FactoryClient(platform.chain, parted.market.factory()).verifier_info(parted.market.settlement_verifier())
    assert (info.kind, info.samples, info.chunks) == ("settlement", 10, 2)
    assert parted.task.test_chunk_parts == 2
    most = platform.chain.call(
        platform.chain.contract("EzklSettlementVerifier", parted.market.settlement_verifier()).functions.MAX_PARTS()
    )
    with pytest.raises(ValidationError, match=f"less than or equal to {most}"):
        TaskSpec(test_chunk_rows=2 * (most + 1), test_chunk_parts=most + 1)
    assert most == MAX_SETTLEMENT_PARTS  # the adapter's bound is the task's and the prover's
    assert "0x" + platform.chain.call(parted.market.contract.functions.dataCommitment()).hex() == (
        DataChunks.of(data, 20, parted.task.model, 1, parts=2).commitment
    )
    checked = check_market.fn(parted.market.address, task_spec(parted.market, platform.store))
    assert checked[-1].startswith("settlement verifier") and settlement_build.dir.name in checked[-1]
    with pytest.raises(ConfigError, match="settlement in 2 parts"):
        publish_market(owner.address, data, ModelKind.lr, settlement_parts=2, **terms)
    # a proven settlement of 6 rounds needs 7 chunks of 10 rows: refused before any transaction
    head = platform.chain.head()
    with pytest.raises(ZKError, match="a proven settlement of 6 rounds .* needs 7"):
        publish_market(owner.address, data, ModelKind.lr, test_rows=10, **{**terms, "rounds": 6})
    assert platform.chain.head() == head
