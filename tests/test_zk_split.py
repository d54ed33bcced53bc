"""A round proven by parameter chunks (fedmarket/zk/round_split.py) on real EZKL builds (tiny:
L = 4 slots of 8 parameters in 4 chunks of 2): the chunk proofs and the rule proof verify, link by
their hashes, keep what the one-proof rule keeps, and a chunk from another round, under another
mask or with another aggregate does not pass."""

from __future__ import annotations

import numpy as np
import pytest

from fedmarket.algorithms.outliers.proven import chunk_size, chunk_slices, root_slack
from fedmarket.context import Platform
from fedmarket.errors import ZKError
from fedmarket.fixed_point import STEP, quantize
from fedmarket.settings import Settings
from fedmarket.zk import RoundStatement, deploy_split_round_verifier, evaluate, split_round_verdict
from fedmarket.zk.ezkl.prover import prove, witness
from fedmarket.zk.round_split import (
    SplitRoundProof,
    _hints,
    _part,
    build_split_round,
    chunk_commitments,
    chunk_inputs,
    proof_chunk_commitments,
    prove_split_round,
    split_commitment,
    split_witnesses,
    verify_split_round,
)
from tests.conftest import reverted_after
from tests.helpers import cid_of, create_market, party
from tests.test_zk import START, models

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


def test_a_chunk_proof_of_another_round_does_not_link(split_builds):
    rows = models(2)
    statement = RoundStatement(rows, 2, domain=7, kept_before=0b0011, start=START)
    proof = prove_split_round(split_builds, statement)
    assert proof.mask == [True, True, True, False] and verify_split_round(split_builds, proof, statement)
    # chunk 0 of the same round with every model moved, under the same mask and its aggregate
    moved = RoundStatement([quantize(r + 0.5) for r in rows], 2, domain=7, kept_before=0b0011, start=START)
    aggregate = quantize(np.mean([m for m, k in zip(moved.models, proof.mask) if k], axis=0))
    other = prove(split_builds.chunk, chunk_inputs(moved, aggregate, proof.mask, CHUNKS, packed=True)[0])
    swapped = SplitRoundProof(
        [other, *proof.chunk_proofs[1:]], proof.rule_proof, proof.mask, proof.aggregate, proof.reasons
    )
    assert not swapped.links
    assert not verify_split_round(split_builds, swapped, statement)


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


def test_a_round_split_under_kzg_commitments_verifies(tmp_path_factory):
    builds = build_split_round(
        L, D, 2, Settings(zk_cache_dir=tmp_path_factory.mktemp("split-kzg-cache")), commitment="polycommit"
    )
    rows = models(1)
    statement = RoundStatement(rows, 1, domain=12345, start=START)
    proof = prove_split_round(builds, statement)
    assert proof.mask == [True, True, True, False] and proof.links
    assert verify_split_round(builds, proof, statement)
    assert proof_chunk_commitments(builds, proof.chunk_proofs[1])[0] == chunk_commitments(builds.chunk, rows[0], 2)[1]


def test_the_split_adapter_verifies_a_round_proven_by_chunks_on_chain(anvil_url, split_builds, tmp_path):
    """A round in chunks, off chain and by the split adapter over EZKL's two generated verifiers
    (contracts/src/EzklSplitRoundVerifier.sol) given a market's own instances: trainers commit to
    their chunks, it accepts the P + 1 proofs, and refuses a chunk proof over another model and a
    forged mask."""
    platform = Platform.from_settings(Settings(store_dir=tmp_path / "blocks", chain_rpc_url=anvil_url))
    with reverted_after(platform):
        deployer = party(platform, "split-deployer")
        chunk = split_builds.chunk
        deployed = deploy_split_round_verifier(platform.chain, deployer.account, split_builds.rule, chunk, L, CHUNKS)
        market, _, aggregator, members, _ = create_market(platform, trainers=L)
        market.open_round(
            aggregator.account, cid_of(platform, b"start"), split_commitment(chunk, START, CHUNKS, global_model=True)
        )
        rows = models(3)
        for member, model in zip(members, rows):
            market.submit(member.account, 1, cid_of(platform, model.tobytes()), split_commitment(chunk, model, CHUNKS))
        statement = RoundStatement(rows, 1, market.domain(1), start=START)
        proof = prove_split_round(split_builds, statement)
        # off chain: kept as the one-proof rule keeps, every proof verifies and links, and each
        # chunk proof hashes the chunks of the models, the start model and the aggregate
        assert proof.mask == evaluate(statement).mask == [True, True, True, False]
        assert len(proof.chunk_proofs) == CHUNKS and proof.links
        assert verify_split_round(split_builds, proof, statement)
        for c, p in enumerate(proof.chunk_proofs):
            carried = proof_chunk_commitments(split_builds, p)
            assert carried[:L] == [chunk_commitments(chunk, m, CHUNKS)[c] for m in rows]
            assert carried[L] == chunk_commitments(chunk, START, CHUNKS, global_model=True)[c]
            assert carried[L + 1] == chunk_commitments(chunk, proof.aggregate, CHUNKS, global_model=True)[c]
        assert np.max(np.abs(proof.aggregate - np.mean(rows[:3], axis=0))) <= STEP / 2
        other = [rows[0], quantize(rows[1] + 1.0), rows[2], rows[3]]
        assert not verify_split_round(split_builds, proof, RoundStatement(other, 1, market.domain(1), start=START))
        aggregate = split_commitment(chunk, proof.aggregate, CHUNKS, global_model=True)
        honest = market.round_instances(1, aggregate, proof.benign_mask)
        accepted, gas = split_round_verdict(
            platform.chain, deployer.account, deployed.adapter, proof.calldata(), honest
        )
        assert accepted and proof.benign_mask == 0b0111
        print(f"split adapter, L = {L} in {CHUNKS} chunks: {gas} gas")
        # chunk 1 proven over another model for slot 0: its hash is not slot 0's commitment
        moved = RoundStatement([quantize(rows[0] + 0.5), *rows[1:]], 1, market.domain(1), start=START)
        other = prove(chunk, chunk_inputs(moved, proof.aggregate, proof.mask, CHUNKS, packed=True)[1])
        forged = SplitRoundProof(
            [proof.chunk_proofs[0], other, *proof.chunk_proofs[2:]],
            proof.rule_proof,
            proof.mask,
            proof.aggregate,
            proof.reasons,
        )
        assert split_round_verdict(platform.chain, deployer.account, deployed.adapter, forged.calldata(), honest) == (
            False,
            None,
        )
        kept_all = market.round_instances(1, aggregate, 0b1111)
        assert not split_round_verdict(platform.chain, deployer.account, deployed.adapter, proof.calldata(), kept_all)[
            0
        ]
