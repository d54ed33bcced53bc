"""The round circuit on a real EZKL build (tiny: L = 4 slots of 8 parameters, the session's
`round_build`): the proof carries the KZG points that open the models' commitments, the in-circuit mask and aggregate
equal the float ones, proofs verify with EZKL's verifier, and builds are cached by circuit hash.
On-chain verification: tests/test_zk_chain.py."""

from __future__ import annotations

import numpy as np
import pytest

from fedmarket.errors import ConfigError, ZKError
from fedmarket.fixed_point import STEP, on_grid, quantize
from fedmarket.settings import Settings
from fedmarket.zk import (
    RoundStatement,
    build_round_circuit,
    evaluate,
    model_commitment,
    packed_commitment,
    poseidon_commitment,
    prove_round,
    verifier_artifact,
    verify_locally,
)
from fedmarket.zk.ezkl.polycommit import point_commitment, proof_commitments

L, D = 4, 8
START = np.zeros(D)  # round 1's global model here, so each model is its own update


def models(seed: int) -> list[np.ndarray]:
    """Three honest models around a shared update and one far from them, which the rule must
    flag; `seed` rotates them. The honest three sit at +-t e0 and 1.741 t e1 from the shared
    update, so m-Krum's pair in round 1 is the first two (with four slots its m is 2)."""
    rng = np.random.default_rng(seed)
    e = np.linalg.qr(rng.normal(size=(D, 2)))[0].T  # two orthonormal directions
    g, t = 3.0, 2.0  # the shared update (from the zero model) and the honest spread
    rows = np.vstack([g + t * e[0], g - t * e[0], g + 1.741 * t * e[1], np.full(D, g + 20.0)])
    return [quantize(r) for r in rows]


def test_the_proofs_points_are_the_models_commitments(round_build):
    rows = models(1)
    statement = RoundStatement(rows, 1, domain=12345, start=START)
    proof = prove_round(round_build, statement)
    assert proof.proof.input_hashes == [] and len(proof.proof.instances) == 3 * L + 8  # outputs only
    points = proof_commitments(proof.proof.proof_json, L + 2)
    assert [point_commitment(p) for p in points] == [
        model_commitment(round_build, m) for m in [*rows, START, proof.aggregate]
    ]
    assert proof.aggregate_commitment == model_commitment(round_build, proof.aggregate)
    assert len(set(point_commitment(p) for p in points)) == L + 2
    assert verify_locally(round_build, proof.proof)
    # the attacker is out, in float and in circuit, and the aggregate is the mean of the rest
    assert proof.mask == [True, True, True, False]
    exact = np.mean([rows[i] for i in range(3)], axis=0)
    assert np.max(np.abs(proof.aggregate - exact)) <= STEP / 2
    assert on_grid(proof.aggregate)


def test_a_hashed_round_commits_with_the_circuits_own_input_hashes(hashed_round_build):
    rows = models(1)
    proof = prove_round(hashed_round_build, RoundStatement(rows, 1, domain=12345, start=START))
    assert proof.proof.input_hashes[:L] == [int(model_commitment(hashed_round_build, w), 16) for w in rows]
    assert proof.proof.input_hashes[:L] == [int(poseidon_commitment(w), 16) for w in rows]
    # the global models are hashed two values per element (fedmarket/packing.py)
    start = int(model_commitment(hashed_round_build, START, global_model=True), 16)
    assert proof.proof.input_hashes[L] == start == int(packed_commitment(START), 16)
    assert start != int(poseidon_commitment(START), 16)
    assert proof.aggregate_commitment == packed_commitment(proof.aggregate)
    assert proof.mask == [True, True, True, False] and verify_locally(hashed_round_build, proof.proof)


def test_later_rounds_measure_against_last_rounds_benign_trainers(round_build):
    rows = models(1)
    round_one = evaluate(RoundStatement(rows, 1, domain=1, start=START))
    assert round_one.mask == [True, True, True, False]
    # round 2, reference = trainers 0 and 1 (kept last round, present now): slot 3 is still out
    statement = RoundStatement(rows, 2, domain=2, kept_before=0b0011, start=START)
    kept = prove_round(round_build, statement)
    assert kept.mask == [True, True, True, False] and verify_locally(round_build, kept.proof)
    # the roots are the distances to the average of trainers 0 and 1, times m = 2
    reference = np.mean([rows[0], rows[1]], axis=0)
    exact = [2 * np.linalg.norm(w - reference) for w in rows]
    assert np.allclose(evaluate(statement).roots[:L], exact, atol=STEP)
    # nobody kept last round is present (slot 2 absent): the reference falls back to m-Krum
    slots = [*rows[:2], None, rows[3]]
    fallback = evaluate(RoundStatement(slots, 2, domain=2, kept_before=0b0100, start=START))
    assert fallback.mask == evaluate(RoundStatement(slots, 1, domain=2, start=START)).mask == [True, True, False, False]


def _select(values, among, k):
    """_smallest at the prover's threshold (_kth), checked to miss nothing."""
    from fedmarket.algorithms.outliers.proven import _kth, _smallest

    chosen, miss = _smallest(values, among, k, _kth(values, among, k))
    assert not miss.any()
    return chosen


def test_smallest_orders_by_value_then_by_index():
    import torch

    from fedmarket.algorithms.outliers.proven import _least

    values = torch.tensor([[3.0, 1.0, 3.0, 2.0]], dtype=torch.float64) * STEP
    everyone = torch.ones(1, 4, dtype=torch.float64)
    assert _least(values, everyone).tolist() == [[0.0, 1.0, 0.0, 0.0]]
    two = torch.tensor([[2.0]], dtype=torch.float64)
    assert _select(values, everyone, two).tolist() == [[0.0, 1.0, 0.0, 1.0]]
    assert _select(values, everyone, two + 1).tolist() == [[1.0, 1.0, 0.0, 1.0]]  # the tie at 3 goes to slot 0
    without_1 = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    assert _least(values, without_1).tolist() == [[0.0, 0.0, 0.0, 1.0]]
    assert _select(values, without_1, two).tolist() == [[1.0, 0.0, 0.0, 1.0]]
    assert _select(values, without_1, two * 0).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert _select(values, without_1, two * 2).tolist() == without_1.tolist()  # k past the count: all


def test_an_order_threshold_that_selects_another_set_misses():
    """Tied values 12, 5, 14, 11 (4 v + index steps): for k = 2 every threshold from 11 up to below
    12 selects slots 1 and 3; one step lower selects one, 12 selects three: each misses by one."""
    import torch

    from fedmarket.algorithms.outliers.proven import _smallest

    values = torch.tensor([[3.0, 1.0, 3.0, 2.0]], dtype=torch.float64) * STEP
    everyone = torch.ones(1, 4, dtype=torch.float64)
    two = torch.tensor([[2.0]], dtype=torch.float64)
    for steps, chosen, miss in [
        (11, [0, 1, 0, 1], 0),
        (11.5, [0, 1, 0, 1], 0),
        (10, [0, 1, 0, 0], 1),
        (12, [1, 1, 0, 1], 1),
    ]:
        got, missed = _smallest(values, everyone, two, torch.tensor([[steps * STEP]], dtype=torch.float64))
        assert (got.tolist(), missed.item()) == ([[float(c) for c in chosen]], miss), steps


@pytest.mark.parametrize("seed", [1, 3])
def test_the_order_thresholds_are_the_circuits_own(round_build, seed):
    """Models a few steps apart (round 1: Krum chooses the reference). EZKL rounds each Gram entry
    onto the grid, moving the squared distances by up to two steps and with them Krum's orders:
    thresholds read off float64's distances miss in the circuit, while those of the screen run as
    the circuit computes (mode "grid", what the prover supplies) select exactly."""
    import torch

    from fedmarket.algorithms.outliers.proven import ProvenRoundRule
    from fedmarket.zk import round_proof
    from fedmarket.zk.ezkl.prover import circuit_outputs

    rng = np.random.default_rng(seed)
    start = quantize(rng.normal(0.0, 0.05, D))
    statement = RoundStatement([quantize(start + rng.normal(0.0, 0.02, D)) for _ in range(L)], 1, 1, start=start)
    result = evaluate(statement)
    inputs = statement.inputs(result.aggregate, result.advice, False)
    # at a few steps the circuit may choose another reference than float64 does: prove_round then
    # proves the circuit's mask, aggregated under it
    _, _, mask, _ = circuit_outputs(round_build, inputs)
    result = round_proof.under_mask(statement, result, [m == 1 for m in mask])
    inputs = statement.inputs(result.aggregate, result.advice, False)
    assert circuit_outputs(round_build, inputs)[3] == [1]
    tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)) for a in inputs]
    with torch.no_grad():
        float_order = ProvenRoundRule(L, D, mode="float").double().screen(*tensors)["order"].numpy()[0]
    advice = np.concatenate([result.roots, quantize(float_order)])
    assert circuit_outputs(round_build, statement.inputs(result.aggregate, advice, False))[3] == [0]


def test_smallest_and_median_agree_with_ranking_every_value():
    """The order thresholds and the sorting network pick what ranking each value against every
    other did, ties included."""
    import torch

    from fedmarket.algorithms.outliers.proven import ProvenRoundRule, _least

    rng = np.random.default_rng(3)
    rule = ProvenRoundRule(7, 4).double()
    for _ in range(200):
        values = torch.from_numpy(rng.integers(0, 6, size=(7, 7)) * STEP)
        among = torch.from_numpy(rng.integers(0, 2, size=(7, 7)).astype(np.float64))
        k = float(rng.integers(0, 8))  # the circuit asks for at most L
        smaller = (values.unsqueeze(-1) > values.unsqueeze(-2)) | (
            (values.unsqueeze(-1) == values.unsqueeze(-2)) & (torch.arange(7)[:, None] > torch.arange(7)[None, :])
        )
        rank = (smaller.double() * among.unsqueeze(-2)).sum(dim=-1)  # [i, j]: among l before j in row i
        expected = among * (rank < k).double()
        assert torch.equal(_select(values, among, torch.tensor([[k]], dtype=torch.float64)), expected)
        if k == 1.0:
            assert torch.equal(_least(values, among), expected)
        row, mask = values[:1], among[:1]
        chosen = np.sort(row[mask > 0.5].numpy())
        median = float(np.median(chosen)) if chosen.size else 0.0
        assert rule._median(row, mask).item() == median


def test_float_aggregate_within_one_step_of_the_proven_one():
    rng = np.random.default_rng(7)
    raw = rng.normal(0.0, 0.3, size=(L, D))
    statement = RoundStatement([quantize(r) for r in raw], 2, domain=1, kept_before=0b1111, start=START)
    result = evaluate(statement)
    float_mean = raw[np.array(result.mask)].mean(axis=0)
    assert np.max(np.abs(result.aggregate - float_mean)) <= STEP


@pytest.mark.parametrize("build", ["round_build", "hashed_round_build"])
def test_a_round_that_keeps_nobody_keeps_its_global_model(request, build):
    """Every model a free rider: the mask is empty, and the only aggregate the circuit accepts
    is the start model (k agg = sum of none holds for any aggregate, so it is checked apart)."""
    from fedmarket.zk.ezkl.prover import circuit_outputs

    circuit = request.getfixturevalue(build)
    start = quantize(np.linspace(-1.0, 1.0, D))
    statement = RoundStatement([start.copy() for _ in range(L)], 2, domain=1, kept_before=0b1111, start=start)
    advice = evaluate(statement).advice
    packed = build == "hashed_round_build"

    def outputs(aggregate):
        _, _, mask, (valid,) = circuit_outputs(circuit, statement.inputs(aggregate, advice, packed))
        return mask, valid

    assert outputs(start) == ([0] * L, 1)
    assert outputs(quantize(start + STEP))[1] == 0
    assert outputs(np.zeros(D))[1] == 0
    if not packed:  # and the prover proves that round rather than leave it unproven
        proof = prove_round(circuit, statement)
        assert proof.benign_mask == 0 and np.array_equal(proof.aggregate, start)
        assert proof.aggregate_commitment == model_commitment(circuit, start)
        assert verify_locally(circuit, proof.proof)


@pytest.mark.parametrize("build", ["round_build", "hashed_round_build"])
def test_the_aggregate_must_round_the_kept_mean_on_every_entry(request, build):
    """k agg = sum of the k kept models within k/2 steps on every entry; 2 steps off on one entry,
    either way, and the circuit's valid is 0."""
    from fedmarket.zk.ezkl.prover import circuit_outputs

    circuit = request.getfixturevalue(build)
    statement = RoundStatement(models(5), 1, domain=1, start=START)
    result = evaluate(statement)

    def valid(aggregate):
        inputs = statement.inputs(aggregate, result.advice, build == "hashed_round_build")
        return circuit_outputs(circuit, inputs)[-1][0]

    assert sum(result.mask) == 3 and valid(result.aggregate) == 1
    for delta in (2 * STEP, -2 * STEP):
        off = result.aggregate.copy()
        off[5] += delta
        assert valid(off) == 0


def test_a_start_model_element_that_unpacks_the_second_way_is_not_valid():
    """Packed (fedmarket/packing.py), an element whose first value sits past its range unpacks with
    its quotient rounded up and its first value below zero. A prover who takes that reading, with
    roots and aggregate for the model it reads, still gets valid 0. In float, which rounds as EZKL
    does (the circuit equals the float module: tests/test_zk_rule.py; a value this far out leaves
    the rule's range checks in circuit, tests/test_packing.py unpacks it on a build)."""
    from fedmarket.packing import OFFSET, PAIR_BITS, pack_pairs
    from fedmarket.zk.round_proof import _tensors

    element = (2 * OFFSET + 5 + (7 << PAIR_BITS)) * STEP
    read = START.copy()
    read[:2] = (5 - (1 << PAIR_BITS) + OFFSET) * STEP, 8 * STEP  # its first value and quotient, as read
    statement = RoundStatement(models(5), 1, domain=1, start=read)
    result = evaluate(statement)
    inputs = statement.inputs(result.aggregate, result.advice, False)
    inputs[L] = pack_pairs(START).reshape(1, -1)
    inputs[L + 1] = pack_pairs(result.aggregate).reshape(1, -1)
    inputs[L][0, 0] = element
    outputs = statement.circuit(True)(*_tensors(inputs))
    assert outputs[2].tolist() == [[float(k) for k in result.mask]] and outputs[-1].item() == 0


def test_values_off_the_grid_or_out_of_range_are_refused(round_build):
    with pytest.raises(ZKError, match="grid"):
        poseidon_commitment(np.array([0.1]))
    # a KZG commitment rounds nothing: EZKL would, and the rounded model would share it
    with pytest.raises(ZKError, match="grid"):
        model_commitment(round_build, np.full(D, 0.1))
    with pytest.raises(ZKError, match="provable range"):
        quantize(np.array([5000.0]))


def test_generated_verifier_compiles_under_the_code_size_limit(round_build):
    artifact = verifier_artifact(round_build)
    runtime = len(bytes.fromhex(artifact["deployedBytecode"].removeprefix("0x")))
    assert 0 < runtime <= 24_576, "EIP-170"
    names = {f.get("name") for f in artifact["abi"] if f["type"] == "function"}
    assert names == {"verifyProof"}


def test_build_is_cached_by_circuit_hash(round_build):
    settings = Settings(zk_cache_dir=round_build.dir.parent)
    again = build_round_circuit(L, D, settings)
    assert again.dir == round_build.dir and again.setup_report == round_build.setup_report
    assert not again.built_now  # `bench norm` reports setup by it
    other = build_round_circuit(L + 1, D, settings)
    assert other.digest != round_build.digest


def test_a_circuits_layout_is_the_shape_of_its_build(round_build, hashed_round_build):
    """`bench zk --layout` sizes a circuit without setting it up: the same shape its build has."""
    from fedmarket.zk import round_circuit

    for build, commitment in ((round_build, "polycommit"), (hashed_round_build, "poseidon")):
        shape = round_circuit(L, D, None, commitment).shape(build.dir.parent)
        assert shape == build.shape
        assert (shape.commitment, shape.hash_rows > 0) == (commitment, commitment == "poseidon")


def test_one_circuit_and_srs_give_one_verifying_key_on_every_build(round_build, tmp_path):
    """EZKL lists range checks in hash-set order, which sets their tables' columns; the toolchain
    sorts them, so fresh builds of the tiny round circuit with its SRS all give the session build's
    keys and verifier. (Unsorted, its two orders occur about equally: three builds would all match
    1 time in 8.)"""
    import shutil

    columns = list(round_build.dir.parent.glob("columns-*.json"))  # skip choosing columns again
    for i in range(3):
        cache = tmp_path / str(i)
        cache.mkdir()
        for choice in columns:
            shutil.copy(choice, cache)
        build = build_round_circuit(L, D, Settings(zk_cache_dir=cache, zk_srs_path=round_build.srs_path))
        assert build.dir.name == round_build.dir.name and build.built_now
        assert build.vk.read_bytes() == round_build.vk.read_bytes(), f"build {i}"
    deployed = verifier_artifact(round_build)["deployedBytecode"]
    assert verifier_artifact(build)["deployedBytecode"] == deployed  # what eth_getCode returns, rebuilt


def test_columns_are_the_fewest_that_need_no_larger_domain(tmp_path):
    """1 column where it fits the domain 2 would (4 chained 16 x 16 products: 2^15 rows either
    way), 2 where 1 needs a larger one (40 of them: 2^16 rows with 1 column, 2^15 with 2);
    remembered per circuit."""
    import json

    import torch

    from fedmarket.zk.ezkl.toolchain import RunArgs, choose_columns, export_onnx

    weights = torch.randint(-2, 3, (40, 16, 16), generator=torch.Generator().manual_seed(0)).float() / 4

    class Products(torch.nn.Module):
        def __init__(self, count: int):
            super().__init__()
            self.weights = torch.nn.Parameter(weights[:count])

        def forward(self, x):
            for w in self.weights:
                x = x @ w
            return x

    few, many = tmp_path / "few", tmp_path / "many"
    assert choose_columns(export_onnx(Products(4), [torch.zeros(1, 16)]), RunArgs(), few) == 1
    assert choose_columns(export_onnx(Products(40), [torch.zeros(1, 16)]), RunArgs(), many) == 2
    (remembered,) = many.glob("columns-*.json")
    assert json.loads(remembered.read_text())["logrows"] == {"1": 16, "2": 15}


def test_local_verifier_rejects_a_proof_with_a_forged_instance(round_build, hashed_round_build):
    import dataclasses
    import json

    for build, (at, source) in ((hashed_round_build, (0, 1)), (round_build, (2 * L + 7, 2 * L + 10))):
        # hashed: trainer 0's commitment swapped for trainer 1's; polycommit: trainer 0's mask bit
        # (kept) swapped for trainer 3's (flagged)
        proof = prove_round(build, RoundStatement(models(3), 1, domain=9, start=START)).proof
        forged = json.loads(proof.proof_json)
        assert forged["instances"][0][at] != forged["instances"][0][source]
        forged["instances"][0][at] = forged["instances"][0][source]
        assert verify_locally(build, proof)
        assert not verify_locally(build, dataclasses.replace(proof, proof_json=json.dumps(forged)))


def test_a_missing_ceremony_file_is_a_config_error(tmp_path):
    settings = Settings(zk_cache_dir=tmp_path, zk_srs_path=tmp_path / "ceremony.srs")
    with pytest.raises(ConfigError, match="FEDMARKET_ZK_SRS_PATH"):
        build_round_circuit(2, 2, settings)
