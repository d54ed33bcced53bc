"""Round proofs verified by the market on a real EVM: EZKL's generated verifier behind the round
adapter (contracts/src/EzklRoundVerifier.sol), tiny circuit (L = 4 slots of 8 parameters).

Each forged claim is rejected on chain (`ProofRejected`) and leaves the market unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from fedmarket.context import Platform, use_platform
from fedmarket.errors import ContractRevertError, VerifierMismatchError
from fedmarket.fixed_point import quantize
from fedmarket.settings import Settings
from fedmarket.zk import RoundStatement, model_commitment, prove_round
from fedmarket.zk.ezkl.deploy import deploy_round_verifier, deployed_verifier_code
from fedmarket.zk.ezkl.verifier import check_verifier
from tests.conftest import reverted_after
from tests.helpers import cid_of, create_market, party, snapshot, verifier_factory
from tests.test_zk import models

L, D = 4, 8


def trainer_models(seed: int) -> list[np.ndarray]:
    return models(seed)  # three honest models and one the rule flags (tests/test_zk.py)


def proving_market(platform, round_build, models: list[np.ndarray | None], start: np.ndarray):
    """A market of L trainers whose rounds are proven, round 1 open and `models` submitted."""
    factory, deployer = verifier_factory(platform)
    verifier = deploy_round_verifier(factory, deployer.account, round_build, L)
    market, _, aggregator, members, _ = create_market(
        platform, trainers=L, round_verifier=verifier.adapter, factory=factory
    )
    market.open_round(aggregator.account, cid_of(platform, b"start"), model_commitment(round_build, start))
    for member, model in zip(members, models):
        if model is not None:
            market.submit(member.account, 1, cid_of(platform, model.tobytes()), model_commitment(round_build, model))
    return market, aggregator


def finalize(platform, market, aggregator, proof, *, mask=None, commitment=None, round=1):
    return market.finalize_round(
        aggregator.account,
        round,
        cid_of(platform, proof.aggregate.tobytes()),
        commitment or proof.aggregate_commitment,
        proof.benign_mask if mask is None else mask,
        proof.calldata(),
    )


def expect_rejected(platform, market, aggregator, proof, round=1, **forged):
    before = snapshot(market)
    with pytest.raises(ContractRevertError) as err:
        finalize(platform, market, aggregator, proof, round=round, **forged)
    assert err.value.error_name == "ProofRejected"
    assert snapshot(market) == before


@pytest.fixture(scope="module")
def proven(anvil_url, round_build, tmp_path_factory):
    """One market, round 1 submitted, and its honest proof, made once for the module on the
    session's anvil node (conftest.reverted_after says why anvil)."""
    blocks = tmp_path_factory.mktemp("zk-chain") / "blocks"
    platform = Platform.from_settings(Settings(store_dir=blocks, chain_rpc_url=anvil_url))
    with use_platform(platform):
        models, start = trainer_models(1), quantize(np.zeros(D))
        market, aggregator = proving_market(platform, round_build, models, start)
        proof = prove_round(round_build, RoundStatement(models, 1, market.domain(1), start=start))
    return platform, (market, aggregator, models, start, proof)


@pytest.fixture
def platform(proven):
    """Each test starts from the proven state and leaves nothing behind."""
    with reverted_after(proven[0]) as p:
        yield p


@pytest.fixture
def honest(platform, proven):
    return proven[1]


def test_the_market_verifies_an_honest_round(platform, honest):
    market, aggregator, _, _, proof = honest
    assert proof.mask == [True, True, True, False]
    tx = finalize(platform, market, aggregator, proof)
    state = market.round_state(1)
    assert state.finalized and state.verified and state.benign_mask == 0b0111
    print(f"finalizeRound with proof verification: {tx.gas_used} gas")
    assert tx.gas_used < 1_500_000


def test_a_forged_mask_is_rejected(platform, honest):
    market, aggregator, _, _, proof = honest
    expect_rejected(platform, market, aggregator, proof, mask=0b1111)  # the flagged trainer kept


def test_an_aggregate_that_drops_an_honest_trainer_is_rejected(platform, round_build, honest):
    market, aggregator, models, start, proof = honest
    # the claim: trainer 0 is out (mask 0b0110) and the aggregate is the mean of trainers 1 and 2
    dropped = quantize(np.mean([models[1], models[2]], axis=0))
    commitment = model_commitment(round_build, dropped)
    expect_rejected(platform, market, aggregator, proof, mask=0b0110, commitment=commitment)
    # nor does a true proof of a round in which trainer 0 did not submit pass for this round
    absent = prove_round(round_build, RoundStatement([None, *models[1:]], 1, market.domain(1), start=start))
    assert absent.benign_mask == 0b0110
    expect_rejected(platform, market, aggregator, absent)


def test_a_proof_over_other_updates_is_rejected(platform, round_build, honest):
    market, aggregator, models, start, _ = honest
    other = list(models)
    other[1] = quantize(models[1] + 2 * 2.0**-8)  # two grid steps off what trainer 1 committed to
    proof = prove_round(round_build, RoundStatement(other, 1, market.domain(1), start=start))
    assert proof.mask == [True, True, True, False]
    expect_rejected(platform, market, aggregator, proof)


def test_a_proof_from_another_start_model_is_rejected(platform, round_build, honest):
    market, aggregator, models, start, _ = honest
    # the same submissions measured from a start model the market did not open the round with
    moved = prove_round(round_build, RoundStatement(models, 1, market.domain(1), start=quantize(start + 0.25)))
    assert moved.mask == [True, True, True, False]
    expect_rejected(platform, market, aggregator, moved)


def test_a_proof_replayed_from_another_market_or_round_is_rejected(platform, round_build, honest):
    market, aggregator, models, start, proof = honest
    # the same trainers' commitments and start model in a second market: only the domain differs
    twin, twin_aggregator = proving_market(platform, round_build, models, start)
    expect_rejected(platform, twin, twin_aggregator, proof)
    # a proof for round 2 of this market (another domain) does not pass for round 1
    round_two = prove_round(round_build, RoundStatement(models, 2, market.domain(2), start=start))
    expect_rejected(platform, market, aggregator, round_two)
    finalize(platform, market, aggregator, proof)  # the market's own proof still does


def test_a_later_round_is_proven_against_the_previous_mask_on_chain(platform, round_build, honest):
    market, aggregator, models, _, proof = honest
    finalize(platform, market, aggregator, proof)
    members = [party(platform, "trainer", i) for i in range(L)]  # create_market's trainers
    nxt = [quantize(m + 1.0) for m in models]  # each moved by the same update from its last model
    market.open_round(aggregator.account, cid_of(platform, proof.aggregate.tobytes()), proof.aggregate_commitment)
    for i, model in enumerate(nxt):
        market.submit(members[i].account, 2, cid_of(platform, model.tobytes()), model_commitment(round_build, model))
    # the reference set claimed as every trainer, the flagged one included: not what the chain holds
    forged = prove_round(round_build, RoundStatement(nxt, 2, market.domain(2), 0b1111, start=proof.aggregate))
    expect_rejected(platform, market, aggregator, forged, round=2)
    honest_two = prove_round(round_build, RoundStatement(nxt, 2, market.domain(2), 0b0111, start=proof.aggregate))
    assert honest_two.mask == [True, True, True, False]
    finalize(platform, market, aggregator, honest_two, round=2)
    assert market.round_state(2).verified


def test_proof_bytes_that_do_not_decode_are_rejected_by_name(platform, honest):
    market, aggregator, _, _, proof = honest
    before = snapshot(market)
    with pytest.raises(ContractRevertError) as err:
        market.finalize_round(
            aggregator.account,
            1,
            cid_of(platform, proof.aggregate.tobytes()),
            proof.aggregate_commitment,
            proof.benign_mask,
            b"\x01\x02\x03",
        )
    assert err.value.error_name == "ProofRejected"
    assert snapshot(market) == before


def test_a_build_the_markets_verifier_was_not_made_from_is_refused_before_proving(
    platform, honest, round_build, settlement_build
):
    """The round flow reads the runtime code of the Halo2 verifier behind the market's adapter, and
    the proving step first checks that its own build compiles to it: the market's build passes;
    another build (here another circuit's; another SRS differs the same way) is refused by name."""
    market, *_ = honest
    code = deployed_verifier_code(platform.chain, market.round_verifier())
    check_verifier(round_build, code)
    with pytest.raises(VerifierMismatchError, match="not made from this machine's build of settlement-L4"):
        check_verifier(settlement_build, code)
