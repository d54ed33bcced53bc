"""Settlement proven and verified by the market, one proof per round (tiny: L = 4 trainers, LR on
3 features and 2 classes, and an MLP of one hidden unit with the same 8 parameters, test chunks of
10 rows): the final model's accuracy on each round's seed-picked chunk of the owner's committed
data and that round's RLOO contributions, summed by the contract. Each forged claim, a round left
out and a proof over another round's updates are rejected on chain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eth_abi import decode
from pydantic import ValidationError

from fedmarket.chain import contribution_step
from fedmarket.context import Platform, use_platform
from fedmarket.errors import ContractRevertError, ZKError
from fedmarket.field import BN254_FIELD
from fedmarket.fixed_point import quantize
from fedmarket.ml.data import Dataset
from fedmarket.ml.models import build_model, vector_to_state
from fedmarket.settings import Settings
from fedmarket.zk import RoundStatement, packed_commitment, poseidon_commitment, prove_round
from fedmarket.zk.ezkl.deploy import deploy_round_verifier, deploy_settlement_verifier
from fedmarket.zk.settlement_proof import (
    DataChunks,
    SettlementStatement,
    build_settlement_circuit,
    chunk_rows,
    evaluate,
    prove_settlement,
    rloo_subsets,
    round_rloo_seed,
    round_test_chunk,
    split_by_chunks,
)
from fedmarket_schemas.market import ModelConfig, ModelKind, TaskSpec
from tests.conftest import reverted_after
from tests.helpers import cid_of, create_market, snapshot, verifier_factory

L, F, C, N = 4, 3, 2, 10
MODEL = ModelConfig(in_features=F, classes=C)
# one hidden unit: 1 * (F + 1) + C * (1 + 1) = 8 parameters, the round circuit's d
MLP = ModelConfig(kind=ModelKind.mlp, in_features=F, classes=C, hidden=1)


def owner_data(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    features = rng.integers(0, 17, size=(60, F)).astype(np.float32)  # digits-like intensities 0..16
    return Dataset(features, (features[:, 0] + features[:, 1] > 16).astype(np.int64))


def final_round_models(seed: int = 5) -> list[np.ndarray]:
    """LR models of varying quality for 'x0 + x1 > 16' (weights of class 0, then class 1, then
    biases), and one boosted far along the same direction, which the round rule's distance passes
    flag."""
    good = np.array([-2.0, -2.0, 0.0, 2.0, 2.0, 0.0, 2.0, -2.0])
    rng = np.random.default_rng(seed)
    models = [good + rng.normal(0, s, size=8) for s in (0.2, 1.5, 3.0)]
    return [quantize(m) for m in [*models, 8.0 * good]]  # the good update boosted 8x


def mlp_models(hidden: int) -> list[np.ndarray]:
    """MLPs for 'x0 + x1 > 16' (features / 16: x0 + x1 > 1) in torch's parameter order: unit 1 is
    relu(x0 + x1 - 1), unit 2 (if any) relu(1 - x0 - x1), class 1's logit 4 unit 1, class 0's 4
    unit 2 (or 0.1); varied by noise, and one far away that the round rule flags."""
    w1 = np.array([[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0], [0.5, -0.5, 1.0]])[:hidden]
    b1 = np.array([-1.0, 1.0, 0.0])[:hidden]
    w2 = np.zeros((C, hidden))
    w2[1, 0] = 4.0
    if hidden > 1:
        w2[0, 1] = 4.0
    b2 = np.array([0.1 if hidden == 1 else 0.0, 0.0])
    good = np.concatenate([w1.ravel(), b1, w2.ravel(), b2])
    rng = np.random.default_rng(11)
    models = [good + rng.normal(0, s, size=good.size) for s in (0.1, 0.8, 2.0)]
    return [quantize(m) for m in [*models, good + 12.0]]


def _ready_to_settle(platform, hashed_round_build, settlement_build, rounds: list[list[np.ndarray]]):
    """A market with proven rounds and settlement, each of its rounds (one per entry of `rounds`,
    the trainers' models) finalized with a proof."""
    factory, deployer = verifier_factory(platform)
    rounds_v = deploy_round_verifier(factory, deployer.account, hashed_round_build, L)
    settle_v = deploy_settlement_verifier(factory, deployer.account, settlement_build, L, N)
    data = owner_data()
    chunks = DataChunks.of(data, N, MODEL, len(rounds))
    market, _, aggregator, members, _ = create_market(
        platform,
        trainers=L,
        rounds=len(rounds),
        round_verifier=rounds_v.adapter,
        settlement_verifier=settle_v.adapter,
        data_commitment=chunks.commitment,
        factory=factory,
    )
    start, kept = quantize(np.zeros(rounds[0][0].size)), 0
    for r, models in enumerate(rounds, start=1):
        market.open_round(aggregator.account, cid_of(platform, f"start {r}".encode()), packed_commitment(start))
        for member, model in zip(members, models):
            market.submit(member.account, r, cid_of(platform, model.tobytes()), poseidon_commitment(model))
        rp = prove_round(hashed_round_build, RoundStatement(models, r, market.domain(r), kept, start=start))
        market.finalize_round(
            aggregator.account,
            r,
            cid_of(platform, f"agg {r}".encode()),
            rp.aggregate_commitment,
            rp.benign_mask,
            rp.calldata(),
        )
        assert not rp.mask[3] and sum(rp.mask) >= 2  # the boosted model flagged, a coalition left
        start, kept = rp.aggregate, rp.benign_mask
    assert market.phase() == "Settlement"
    return market, aggregator, rounds, start, data, chunks


@pytest.fixture(scope="module")
def ready(anvil_url, hashed_round_build, settlement_build, tmp_path_factory):
    """The LR market of two rounds ready to settle, made once for the module on the session's
    anvil node (conftest.reverted_after says why anvil)."""
    blocks = tmp_path_factory.mktemp("zk-settlement") / "blocks"
    platform = Platform.from_settings(Settings(store_dir=blocks, chain_rpc_url=anvil_url))
    with use_platform(platform):
        rounds = [final_round_models(), final_round_models(seed=8)]
        return platform, _ready_to_settle(platform, hashed_round_build, settlement_build, rounds)


@pytest.fixture
def platform(ready):
    """Each test starts from the ready state and leaves nothing behind."""
    with reverted_after(ready[0]) as p:
        yield p


@pytest.fixture
def settling(platform, ready):
    return ready[1]


@pytest.fixture(scope="module")
def mlp_settlement_build(hashed_round_build):
    """The tiny MLP settlement circuit (L = 4, one hidden unit, 10 test rows)."""
    return build_settlement_circuit(L, MLP, N, Settings(zk_cache_dir=hashed_round_build.dir.parent))


def statement(
    market,
    models,
    final,
    data,
    round: int,
    *,
    chunk_round: int | None = None,
    model: ModelConfig = MODEL,
) -> SettlementStatement:
    """Round `round`'s statement over `models`, scored on round `chunk_round`'s test chunk (its own
    by default)."""
    test = round_test_chunk(data, N, market.split_seed(), chunk_round or round, market.round_count())
    seed = round_rloo_seed(market.rloo_seed(), round)
    subsets = rloo_subsets(seed, market.round_state(round).benign_mask, L)
    domain = market.domain(contribution_step(round))
    return SettlementStatement(models, final, chunk_rows(test, MODEL), subsets, domain, model)


def expect_rejected(market, aggregator, round, accuracy, contributions, proof_bytes, error: str = "ProofRejected"):
    before = snapshot(market)
    with pytest.raises(ContractRevertError) as err:
        market.prove_contributions(aggregator.account, round, accuracy, contributions, proof_bytes)
    assert err.value.error_name == error
    assert snapshot(market) == before


def strictly_correct(logits: np.ndarray, rows: np.ndarray) -> int:
    """Rows whose true class's logit is strictly above every other class's."""
    labels = rows[:, F:].argmax(axis=1)
    true = logits[np.arange(len(rows)), labels]
    others = np.where(np.eye(C, dtype=bool)[labels], -np.inf, logits)
    return int((true > others.max(axis=1)).sum())


def test_counts_equal_a_direct_computation_on_summed_coalition_models():
    """The circuit combines per-model logits; summing each coalition's weights first and taking a
    strict argmax must give the same counts."""
    models, data = final_round_models(), owner_data()
    rows = chunk_rows(data.subset(np.arange(N)), MODEL)
    subsets = rloo_subsets(99, 0b0111, L)
    final = quantize(np.mean(models[:3], axis=0))
    correct, contributions = evaluate(SettlementStatement(models, final, rows, subsets, 1, MODEL))

    def count(weights: np.ndarray) -> int:
        w, b = weights[: C * F].reshape(C, F), weights[C * F :]
        return strictly_correct(rows[:, :F] @ w.T + b, rows)

    stacked = np.stack(models)
    assert correct == count(final)
    expected = [count(subsets[i] @ stacked) - count((subsets[i] * (np.arange(L) != i)) @ stacked) for i in range(L)]
    assert contributions == expected and contributions[3] == 0


def test_each_round_scores_its_own_chunk_and_the_rest_validates():
    data, seed = owner_data(), (7).to_bytes(32, "big")  # 60 rows: K = 6 chunks of 10
    validation, test = split_by_chunks(data, N, seed, 3)
    starts = [
        int(np.flatnonzero((data.features == round_test_chunk(data, N, seed, r, 3).features[0]).all(axis=1))[0])
        for r in (1, 2, 3)
    ]
    assert starts == [10, 20, 30]  # chunks 7 mod 6 = 1, then 2 and 3
    assert np.array_equal(test.features, data.features[10:40]) and len(validation) == 30
    assert not set(map(bytes, validation.features)) & set(map(bytes, test.features))


def test_too_few_chunks_for_the_rounds_are_refused_in_one_line():
    DataChunks.of(owner_data(), N, MODEL, 5)  # 6 chunks: 5 rounds and one to validate
    with pytest.raises(ZKError, match="a proven settlement of 6 rounds .* needs 7"):
        DataChunks.of(owner_data(), N, MODEL, 6)


def test_a_chunk_proven_in_parts_counts_what_one_proof_of_it_would(settlement_build):
    """Two proofs of the 10-row circuit over a 20-row chunk: each part's counts are its rows', and
    their sums the whole chunk's; the calldata carries both proofs and part 1's counts as its proof
    does (signed contributions as field elements)."""
    models, data = final_round_models(), owner_data()
    rows = chunk_rows(data.subset(np.arange(2 * N)), MODEL)
    whole = SettlementStatement(
        models, quantize(np.mean(models[:3], axis=0)), rows, rloo_subsets(5, 0b0111, L), 1, MODEL
    )
    proof = prove_settlement(settlement_build, whole, parts=2)
    halves = [evaluate(part) for part in whole.parts(2)]
    assert [(c, v) for c, v in zip(proof.part_correct, proof.part_contributions)] == halves
    assert (proof.correct, proof.contributions) == evaluate(whole)
    assert (proof.samples, proof.accuracy_bps) == (2 * N, proof.correct * 10_000 // (2 * N))
    chunks = DataChunks.of(data, 2 * N, MODEL, parts=2)
    assert len(chunks.hashes) == 6 and chunks.hashes[1] == int(poseidon_commitment(rows[N:]), 16)
    proofs, free = decode(["bytes[]", "uint256[]"], proof.calldata((0).to_bytes(32, "big"), chunks))
    assert list(proofs) == [p.proof for p in proof.proofs]
    assert list(free[-(L + 1) :]) == [proof.part_correct[1], *(c % BN254_FIELD for c in proof.part_contributions[1])]
    with pytest.raises(ZKError, match="cannot be proven in 3 parts"):
        whole.parts(3)


def test_a_task_splits_its_test_chunk_only_into_equal_parts():
    assert TaskSpec(test_chunk_rows=20, test_chunk_parts=2).test_chunk_parts == 2
    with pytest.raises(ValidationError, match="split into that many equal parts"):
        TaskSpec(test_chunk_rows=20, test_chunk_parts=3)
    with pytest.raises(ValidationError, match="split into that many equal parts"):
        TaskSpec(test_chunk_parts=2)  # no proven settlement
    with pytest.raises(ValidationError, match="less than or equal to 16"):
        TaskSpec(test_chunk_rows=34, test_chunk_parts=17)  # EzklSettlementVerifier.MAX_PARTS
    assert TaskSpec(aggregation="secure", norm_bound=1.0).norm_bound == 1.0  # the other rules still apply


def test_rloo_subsets_contain_their_trainer_and_only_benign_ones():
    subsets = rloo_subsets(2**200 + 7, 0b10111, 5)
    assert subsets[3].sum() == 0  # trainer 3 is not benign
    for i in (0, 1, 2, 4):
        assert subsets[i, i] == 1 and subsets[i].sum() == 2  # N = 4: size max(2, ceil(log2 4)) = 2
        assert subsets[i, 3] == 0


def test_the_market_verifies_every_rounds_contributions_and_pays_their_sums(settling, settlement_build):
    market, aggregator, rounds, final, data, chunks = settling
    proofs = []
    for r, models in enumerate(rounds, start=1):
        proof = prove_settlement(settlement_build, statement(market, models, final, data, r))
        # the circuit's arithmetic is exact: the proven counts are the float ones
        assert (proof.correct, proof.contributions) == evaluate(statement(market, models, final, data, r))
        assert proof.contributions[3] == 0  # flagged: no subset
        tx = market.prove_contributions(
            aggregator.account, r, proof.accuracy_bps, proof.contributions, proof.calldata(market.split_seed(), chunks)
        )
        print(f"round {r} contributions {proof.contributions}, proven for {tx.gas_used} gas")
        proofs.append(proof)
    sums = [a + b for a, b in zip(proofs[0].contributions, proofs[1].contributions)]
    assert sums != proofs[1].contributions, "round 1 should count: its contributions are not all zero"
    accuracy = (proofs[0].accuracy_bps + proofs[1].accuracy_bps) // 2
    with pytest.raises(ContractRevertError) as err:
        market.settle(aggregator.account, proofs[1].accuracy_bps, proofs[1].contributions)  # the final round's only
    assert err.value.error_name in ("AccuracyNotProven", "ContributionNotProven")
    market.settle(aggregator.account, accuracy, sums)
    settled = market.last_event("Settled")[0]
    assert market.phase() == "Settled" and settled["verified"] and list(settled["contributions"]) == sums


def test_forged_accuracy_or_contributions_are_rejected(settling, settlement_build):
    market, aggregator, rounds, final, data, chunks = settling
    proof = prove_settlement(settlement_build, statement(market, rounds[0], final, data, 1))
    calldata = proof.calldata(market.split_seed(), chunks)
    expect_rejected(market, aggregator, 1, proof.accuracy_bps + 1000, proof.contributions, calldata)
    forged = list(proof.contributions)
    forged[0], forged[1] = forged[1] + 1, forged[0] + 1
    expect_rejected(market, aggregator, 1, proof.accuracy_bps, forged, calldata)


def test_a_proof_on_another_rounds_test_chunk_is_rejected(settling, settlement_build):
    market, aggregator, rounds, final, data, chunks = settling
    proof = prove_settlement(settlement_build, statement(market, rounds[0], final, data, 1, chunk_round=2))
    calldata = proof.calldata(market.split_seed(), chunks)
    expect_rejected(market, aggregator, 1, proof.accuracy_bps, proof.contributions, calldata)
    # nor does claiming another split seed help: it does not hash to the market's rlooSeed
    other_seed = (int.from_bytes(market.split_seed(), "big") + 1).to_bytes(32, "big")
    expect_rejected(market, aggregator, 1, proof.accuracy_bps, proof.contributions, proof.calldata(other_seed, chunks))


def test_a_round_left_out_or_proven_over_another_rounds_updates_is_rejected(settling, settlement_build):
    market, aggregator, rounds, final, data, chunks = settling
    seed = market.split_seed()
    one = prove_settlement(settlement_build, statement(market, rounds[0], final, data, 1))
    # round 2 first: refused before any proof is read
    expect_rejected(market, aggregator, 2, one.accuracy_bps, one.contributions, b"\x01", "ContributionsOutOfOrder")
    market.prove_contributions(aggregator.account, 1, one.accuracy_bps, one.contributions, one.calldata(seed, chunks))
    with pytest.raises(ContractRevertError) as err:  # settling on round 1 alone
        market.settle(aggregator.account, one.accuracy_bps, one.contributions)
    assert err.value.error_name == "ContributionsNotProven"
    # round 1's proof is not round 2's
    expect_rejected(market, aggregator, 2, one.accuracy_bps, one.contributions, one.calldata(seed, chunks))
    # round 2's seed, mask, chunk and domain over round 1's updates
    stale = prove_settlement(settlement_build, statement(market, rounds[0], final, data, 2))
    expect_rejected(market, aggregator, 2, stale.accuracy_bps, stale.contributions, stale.calldata(seed, chunks))


def test_mlp_counts_equal_torch_on_each_coalitions_average_model():
    """The MLP circuit never divides (sum(W2) relu(Z) + k sum(b2) is k^2 times the average's
    logits): its counts must be those of torch's own MLP loaded with each coalition's average."""
    hidden = 3
    config = ModelConfig(kind=ModelKind.mlp, in_features=F, classes=C, hidden=hidden)
    models, data = mlp_models(hidden), owner_data(3)
    rows = chunk_rows(data.subset(np.arange(N)), MODEL)
    subsets = rloo_subsets(2024, 0b0111, L)
    final = quantize(np.mean(models[:3], axis=0))
    correct, contributions = evaluate(SettlementStatement(models, final, rows, subsets, 1, config))

    def count(params: np.ndarray) -> int:
        net = build_model(config).double()
        net.load_state_dict(vector_to_state(params, config))
        with torch.no_grad():
            return strictly_correct(net(torch.from_numpy(rows[:, :F])).numpy(), rows)

    def average(members: np.ndarray) -> int:  # the empty coalition counts nothing correct
        return count((members @ np.stack(models)) / members.sum()) if members.sum() else 0

    assert correct == count(final)
    expected = [average(subsets[i]) - average(subsets[i] * (np.arange(L) != i)) for i in range(L)]
    assert contributions == expected and contributions[3] == 0
    assert any(c != 0 for c in contributions), "the noisy models should differ in contribution"


def test_the_market_verifies_an_honest_mlp_settlement_and_rejects_forged_contributions(
    platform, hashed_round_build, mlp_settlement_build
):
    market, aggregator, rounds, final, data, chunks = _ready_to_settle(
        platform, hashed_round_build, mlp_settlement_build, [mlp_models(1)]
    )
    proof = prove_settlement(mlp_settlement_build, statement(market, rounds[0], final, data, 1, model=MLP))
    # exact arithmetic: the proven counts are the float ones
    assert (proof.correct, proof.contributions) == evaluate(statement(market, rounds[0], final, data, 1, model=MLP))
    calldata = proof.calldata(market.split_seed(), chunks)
    forged = list(proof.contributions)
    forged[0], forged[1] = forged[1] + 1, forged[0] + 1
    expect_rejected(market, aggregator, 1, proof.accuracy_bps, forged, calldata)
    market.prove_contributions(aggregator.account, 1, proof.accuracy_bps, proof.contributions, calldata)
    market.settle(aggregator.account, proof.accuracy_bps, proof.contributions)
    assert market.phase() == "Settled" and market.last_event("Settled")[0]["verified"]
