"""A round proven by parameter chunks (fedmarket/zk/round_split.py) on real EZKL builds (tiny:
L = 4 slots of 8 parameters in 4 chunks of 2): the chunk proofs and the rule proof verify, link by
their hashes, keep what the one-proof rule keeps, and a chunk from another round, under another
mask or with another aggregate does not pass."""

from __future__ import annotations

import numpy as np
import pytest
from eth_abi import decode, encode

from fedmarket.algorithms.outliers.proven import chunk_size, chunk_slices, root_slack
from fedmarket.audit import audit_market
from fedmarket.chain import FactoryClient
from fedmarket.context import Platform
from fedmarket.errors import ConfigError, ZKError
from fedmarket.fixed_point import STEP, quantize
from fedmarket.ml.training import train_local
from fedmarket.ml.updates import decode_update
from fedmarket.settings import Settings
from fedmarket.simulation.enrol import enrol
from fedmarket.zk import MAX_ROUND_CHUNKS, RoundLayout, RoundStatement, evaluate
from fedmarket.zk.ezkl.prover import Proof, prove, verify_locally, witness
from fedmarket.zk.round_split import (
    _hints,
    _part,
    build_split_round,
    chunk_commitments,
    chunk_inputs,
    links,
    proof_chunk_commitments,
    prove_split_round,
    split_commitment,
    split_round_circuits,
    split_witnesses,
)
from fedmarket_flows.market import open_next_round
from fedmarket_flows.round import round_flow
from fedmarket_flows.settlement import settlement_flow
from fedmarket_schemas.market import ModelKind, RewardSchedule
from fedmarket_tasks.owner import publish_market
from fedmarket_tasks.trainer import check_market, seal_and_store
from tests.conftest import reverted_after
from tests.helpers import party
from tests.test_zk import START, models
from tests.test_zk_flow import owner_terms, tiny_data

L, D, CHUNKS = 4, 8, 4


@pytest.fixture(scope="module")
def split_builds(tmp_path_factory):
    return build_split_round(
        L, D, CHUNKS, Settings(zk_cache_dir=tmp_path_factory.mktemp("split-cache")), commitment="poseidon"
    )


def test_parameters_split_into_even_chunks_the_last_one_shorter():
    assert chunk_size(650, 4) == 164
    assert chunk_slices(650, 4) == [slice(0, 164), slice(164, 328), slice(328, 492), slice(492, 650)]
    assert chunk_slices(7, 2) == [slice(0, 4), slice(4, 7)]
    assert chunk_size(8, 4) == 2
    with pytest.raises(ValueError, match="none of them empty"):
        chunk_size(8, 3)  # chunks of 4 leave the third empty
    with pytest.raises(ValueError):
        chunk_size(8, 0)


def test_the_roots_slack_grows_with_the_chunks_each_entry_is_rounded_in():
    assert root_slack(4, 1) == root_slack(4, 2) == root_slack(4) == (4 * 16 + 2) * STEP
    assert root_slack(4, 4) == (4 * 16 * 2 + 2) * STEP
    assert root_slack(4, 7) == (4 * 16 * 3.5 + 2) * STEP


def test_only_the_rule_proof_skips_the_range_checks_of_its_inputs_and_outputs(split_builds):
    """The rule proof's parts are the chunk proofs' outputs, which those range-check."""
    chunk, rule = (b.settings()["run_args"] for b in (split_builds.chunk, split_builds.rule))
    assert chunk["ignore_range_check_inputs_outputs"] is False and "Hashed" in chunk["output_visibility"]
    assert rule["ignore_range_check_inputs_outputs"] is True and "Hashed" in rule["input_visibility"]
    assert rule["output_visibility"] == "Public"


def test_a_statement_of_another_size_is_refused(split_builds):
    with pytest.raises(ZKError, match="4 slots of 8 parameters, not 4 of 6"):
        prove_split_round(split_builds, RoundStatement([np.zeros(6)] * L, 1, domain=1, start=np.zeros(6)))


def test_a_chunk_of_another_round_does_not_link(split_builds):
    """The rule proof reads chunk c's outputs by the hash of its outputs: a chunk over other models,
    under the same mask and its aggregate, hashes to another value (witnesses carry the hashes
    their proofs would)."""
    rows = models(2)
    statement = RoundStatement(rows, 2, domain=7, kept_before=0b0011, start=START)
    w = split_witnesses(split_builds, statement)
    assert w.result.mask == [True, True, True, False]
    read = w.rule.hashes("inputs")[:CHUNKS]
    assert read == [c.hashes("outputs")[0] for c in w.chunks]
    # chunk 0 of the same round with every model moved, under the same mask and its aggregate
    moved = RoundStatement([quantize(r + 0.5) for r in rows], 2, domain=7, kept_before=0b0011, start=START)
    aggregate = quantize(np.mean([m for m, k in zip(moved.models, w.result.mask) if k], axis=0))
    other = witness(split_builds.chunk, chunk_inputs(moved, aggregate, w.result.mask, CHUNKS, packed=True)[0])
    assert other.hashes("outputs")[0] != read[0]


def test_proofs_link_when_the_rule_reads_each_chunks_output_hash_in_order():
    def proof(inputs, outputs=()):
        return Proof(b"", [], list(inputs), [], 0.0, 0.0, "", list(outputs))

    chunks = [proof([1, 2], [10]), proof([3, 4], [11])]
    assert links(chunks, proof([10, 11, 99]))
    assert not links(chunks, proof([11, 10, 99]))  # in another order
    assert not links(chunks, proof([10, 12, 99]))  # another chunk's output
    assert not links(chunks, proof([10, 11]))  # the hints' hash missing
    assert not links([chunks[0], proof([3, 4])], proof([10, 11, 99]))  # a chunk without its output hash


def test_small_updates_the_chunks_round_otherwise_are_provable(split_builds):
    """Updates a few steps long, where rounding each chunk's products apart moves the Gram entries:
    the prover's advice comes from the rule run as the chunks round it, so the rule proof's witness
    is valid (without it split_witnesses raises ProofMismatchError here)."""
    rng = np.random.default_rng(5)
    start = quantize(rng.normal(0, 0.3, D))
    rows = [quantize(start + rng.normal(0, 0.03, D)) for _ in range(L)]
    w = split_witnesses(split_builds, RoundStatement(rows, 1, domain=3, start=start))
    assert w.rule.outputs[3] == [1] and [bool(m) for m in w.rule.outputs[2]] == w.result.mask


def _rule_outputs(builds, statement, aggregate, chunk_masks):
    """The rule proof's outputs over chunk witnesses made with each chunk's own mask."""
    result = evaluate(statement, builds.chunks)
    scale = int(builds.chunk.settings()["model_output_scales"][0])
    parts = []
    for c, mask in enumerate(chunk_masks):
        inputs = chunk_inputs(statement, aggregate, mask, builds.chunks, packed=True)[c]
        parts.append(_part(witness(builds.chunk, inputs), scale))
    return witness(builds.rule, [*parts, _hints(statement, result.advice)]).outputs


def test_a_chunk_under_another_mask_or_aggregate_fails_the_round(split_builds):
    rows = models(1)
    statement = RoundStatement(rows, 1, domain=12345, start=START)
    result = evaluate(statement, CHUNKS)
    honest = [result.mask] * CHUNKS
    _, _, mask, valid = _rule_outputs(split_builds, statement, result.aggregate, honest)
    assert [bool(m) for m in mask] == result.mask and valid == [1]
    # chunk 2 proven under a mask that keeps the attacker too (its aggregate the mean of all four)
    everyone = quantize(np.mean(rows, axis=0))
    masks = [result.mask, result.mask, [True] * L, result.mask]
    assert _rule_outputs(split_builds, statement, everyone, masks)[3] == [0]
    # every chunk under the rule's mask, the aggregate two steps off in one parameter of chunk 1
    off = result.aggregate.copy()
    off[3] += 2 * STEP
    assert _rule_outputs(split_builds, statement, off, honest)[3] == [0]


def test_a_chunk_under_kzg_commitments_carries_the_points_of_its_models_chunks(tmp_path_factory):
    """Chunks may take their models under KZG commitments (`bench zk --chunks P --commitment
    polycommit`; markets take hashed chunks, whose verifier fits EIP-170). The rule proof reads
    the chunks' outputs hashed either way, so only the chunk circuit differs: its proof verifies
    and carries, for each model, the point of that model's chunk."""
    chunk_spec, _ = split_round_circuits(L, D, 2, None, "polycommit")
    chunk = chunk_spec.build(tmp_path_factory.mktemp("split-kzg-cache"))
    rows = models(1)
    statement = RoundStatement(rows, 1, domain=12345, start=START)
    result = evaluate(statement, 2)
    proof = prove(chunk, chunk_inputs(statement, result.aggregate, result.mask, 2, packed=False)[1])
    assert verify_locally(chunk, proof)
    carried = proof_chunk_commitments(chunk, L, proof)
    assert carried[:L] == [chunk_commitments(chunk, m, 2)[1] for m in rows]
    assert carried[L] == chunk_commitments(chunk, START, 2, global_model=True)[1]
    assert carried[L + 1] == chunk_commitments(chunk, result.aggregate, 2, global_model=True)[1]
    assert carried[L + 1] != chunk_commitments(chunk, quantize(result.aggregate + STEP), 2, global_model=True)[1]


def test_a_market_proves_its_rounds_by_chunks_through_the_flows(anvil_url, split_builds, tmp_path):
    """A market the owner creates with its rounds in chunks (the split adapter, deployed by the
    factory over EZKL's two generated verifiers; not with a proven settlement): a trainer checks
    both verifiers before it joins, the trainers commit to their updates' chunks, the round flow
    proves the round in chunks and the market verifies it, the attacker is flagged, and the audit
    re-verifies. The adapter refuses a chunk proof over another model and a forged mask."""
    settings = Settings(
        store_dir=tmp_path / "blocks", zk_cache_dir=split_builds.chunk.dir.parent, chain_rpc_url=anvil_url
    )
    platform = Platform.from_settings(settings)
    with reverted_after(platform):
        owner, aggregator = party(platform, "owner"), party(platform, "aggregator")
        pays = RewardSchedule(thresholds_bps=(0,), pools_wei=(10**16,))
        terms = owner_terms(aggregator, participation_reward_wei=10**15, schedule=pays)
        with pytest.raises(ConfigError, match="whole model's Poseidon hash"):
            publish_market(owner.address, tiny_data(60, 0), ModelKind.lr, round_chunks=CHUNKS, test_rows=10, **terms)
        published = publish_market(owner.address, tiny_data(60, 0), ModelKind.lr, round_chunks=CHUNKS, **terms)
        market, task, adapter = published.market, published.task, published.market.round_verifier()
        info = FactoryClient(platform.chain, market.factory()).verifier_info(adapter)
        assert (info.kind, info.chunks, info.trainers) == ("split_round", CHUNKS, L)
        assert platform.chain.call(
            platform.chain.contract("EzklSplitRoundVerifier", adapter).functions.MAX_CHUNKS()
        ) == (MAX_ROUND_CHUNKS)
        members = [party(platform, "trainer", i) for i in range(L)]
        enrol(market, members, str(platform.store.put(b'{"summary": "ok"}')))
        checked = check_market(market.address, task)
        assert split_builds.rule.dir.name in checked[1] and split_builds.chunk.dir.name in checked[1]
        chunk = split_builds.chunk
        assert open_next_round(market.address, aggregator.address) == 1
        start = decode_update(platform.store.get(market.model_cid(1)), task.model)
        assert market.model_commitment() == split_commitment(chunk, start, CHUNKS, global_model=True)
        rows = []
        for i, member in enumerate(members):
            local = train_local(start, tiny_data(60, 10 + i), task.model, task.training, seed=i)
            local = local + 5.0 if i == L - 1 else local
            cid, commitment = seal_and_store(market.address, member.address, 1, local, task)
            rows.append(quantize(local))
            assert commitment == split_commitment(chunk, rows[-1], CHUNKS)
            market.submit(member.account, 1, cid, commitment)
        report = round_flow(market.address, 1, aggregator.address)
        assert report.verified and market.round_state(1).verified
        assert report.flagged == [members[-1].address] and report.benign_mask == 0b0111

        # the adapter, asked with the market's own instances: the proof sent, a chunk proof over
        # another model for slot 0, the proof under a forged mask
        (log,) = market.events("RoundFinalized", round=1)
        sent = bytes(market.call_that_emitted(log)[1]["proof"])
        aggregate = decode_update(platform.store.get(market.aggregate_of(1)[0]), task.model)
        commitment = split_commitment(chunk, aggregate, CHUNKS, global_model=True)
        # (the market's start model is now the aggregate: round 1's instances name the one before)
        honest = [*market.round_instances(1, commitment, 0b0111)]
        honest[L + 2] = int(split_commitment(chunk, start, CHUNKS, global_model=True), 16)
        assert market.verifier_accepts(adapter, sent, honest)
        chunk_proofs, rule_proof, hashes = decode(["bytes[]", "bytes", "uint256[]"], sent)
        moved = RoundStatement([quantize(rows[0] + 0.5), *rows[1:]], 1, market.domain(1), start=start)
        other = prove(chunk, chunk_inputs(moved, aggregate, [True, True, True, False], CHUNKS, packed=True)[1])
        w = L + 4
        forged_hashes = [*hashes[:w], *other.instances, *hashes[2 * w :]]
        forged = encode(
            ["bytes[]", "bytes", "uint256[]"],
            [[chunk_proofs[0], other.proof, *chunk_proofs[2:]], rule_proof, forged_hashes],
        )
        assert not market.verifier_accepts(adapter, forged, honest)
        assert not market.verifier_accepts(adapter, sent, [*honest[: L + 4], 0b1111, honest[L + 5]])

        settled = settlement_flow(market.address, aggregator.address)
        assert market.phase() == "Settled"
        paid = {p.account: p.wei for p in settled.payouts}
        assert paid[members[-1].address] == 0 and all(paid[m.address] > 0 for m in members[:-1])
        audited = audit_market(market, platform.store)
        assert audited.passed, audited.failures()
        assert {c.name: c.status for c in audited.checks}["rounds"] == "pass"


def test_a_round_verifiers_kind_names_how_its_rounds_are_proven():
    assert RoundLayout.of_verifier("round") == RoundLayout("poseidon", 1)
    assert RoundLayout.of_verifier("kzg_round") == RoundLayout("polycommit", 1)
    assert RoundLayout.of_verifier("split_round", 4) == RoundLayout("poseidon", 4) and RoundLayout(chunks=4).split
    for kind, chunks in (("settlement", 0), ("none", 0), ("split_round", 1)):
        with pytest.raises(ZKError, match="proves no round"):
            RoundLayout.of_verifier(kind, chunks)
    for commitment, chunks in (("polycommit", 4), ("poseidon", MAX_ROUND_CHUNKS + 1), ("poseidon", 0), ("sha3", 1)):
        with pytest.raises(ZKError):
            RoundLayout(commitment, chunks)
