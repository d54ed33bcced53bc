"""A round proven by parameter chunks, for rounds past one proof's memory: P chunk proofs and one
rule proof (fedmarket/algorithms/outliers/proven_split.py), each a fraction of the one proof's rows.

- Chunk proof c: inputs chunk c of every slot's model, of the start model and of the aggregate
  (hashed, or under KZG commitments), and the benign mask; its outputs (the chunk's Gram entries,
  the mask, its shortfall) hashed into one instance.
- Rule proof: inputs the P chunk outputs and the hints (hashed), outputs as the one-proof round
  circuit's: flags, domain limbs, mask, valid.
The proofs are linked by their instances: the rule proof's hash of its input c is chunk proof c's
hash of its outputs (EZKL hashes both with the same Poseidon over the same field elements), so a
verifier compares integers (`links`). A chunk's model inputs are bound through their hashes (or
points) per chunk: a trainer's commitment to a split round is to its chunks (`chunk_commitments`),
on chain keccak of their Poseidon hashes (`split_commitment`), which the contract adapter
(contracts/src/EzklSplitRoundVerifier.sol) recombines from the chunk proofs' instances.

Chunks under KZG commitments prove faster (fewer rows than hashing), but at two columns the chunk
circuit's verifier, which checks its L + 3 input points, is over EIP-170 at L = 32, so the
adapter takes hashed chunks (fedmarket/zk/market_round.py is how a market uses either layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from eth_abi import encode

from fedmarket.algorithms.outliers.proven import advice_count, chunk_size, chunk_slices
from fedmarket.algorithms.outliers.proven_split import ChunkedRoundRule, GramChunk, chunk_outputs
from fedmarket.errors import ProofMismatchError, ZKError
from fedmarket.field import list_commitment, to_bytes32
from fedmarket.packing import pack_pairs
from fedmarket.settings import Settings, load_settings
from fedmarket.zk.ezkl.polycommit import point_commitment, proof_commitments
from fedmarket.zk.ezkl.prover import Proof, Witness, prove_witness, witness
from fedmarket.zk.ezkl.toolchain import CircuitBuild, CircuitSpec, RunArgs
from fedmarket.zk.round_proof import (
    RoundResult,
    RoundStatement,
    circuit_mask_result,
    evaluate,
    mask_bits,
    model_commitment,
)


@dataclass(frozen=True)
class SplitBuilds:
    """The two circuits of a round of `trainers` slots and `dim` parameters in `chunks` chunks."""

    chunk: CircuitBuild
    rule: CircuitBuild
    trainers: int
    dim: int
    chunks: int


@dataclass(frozen=True)
class SplitRoundProof:
    chunk_proofs: list[Proof]
    rule_proof: Proof
    mask: list[bool]
    aggregate: np.ndarray
    reasons: list[str]

    @property
    def links(self) -> bool:
        """Whether the rule proof's input c is chunk proof c's output, for every chunk."""
        return links(self.chunk_proofs, self.rule_proof)

    @property
    def benign_mask(self) -> int:
        return mask_bits(self.mask)

    def summary(self) -> str:
        """One line for the round's log, as RoundProof.summary: the proofs' times and sizes summed."""
        proofs = [*self.chunk_proofs, self.rule_proof]
        return (
            f"in {len(self.chunk_proofs)} chunks, {len(proofs)} proofs in "
            f"{sum(p.prove_s for p in proofs):.1f} s (witnesses {sum(p.witness_s for p in proofs):.1f} s), "
            f"{sum(p.size for p in proofs)} bytes"
        )

    @property
    def aggregate_commitment(self) -> str:
        """The aggregate's commitment on chain (split_commitment) from the hashes its chunks carry."""
        slot = len(self.mask) + 1
        return list_commitment([p.input_hashes[slot] for p in self.chunk_proofs])

    def calldata(self) -> bytes:
        """The `proof` argument of `finalizeRound` (contracts/src/EzklSplitRoundVerifier.sol):
        abi.encode(bytes[] chunkProofs, bytes ruleProof, uint256[] hashes), the hashes each chunk
        proof's instances in turn, then the rule proof's hash of its hints."""
        hashes = [h for p in self.chunk_proofs for h in p.instances] + [self.rule_proof.input_hashes[-1]]
        return encode(
            ["bytes[]", "bytes", "uint256[]"], [[p.proof for p in self.chunk_proofs], self.rule_proof.proof, hashes]
        )


def links(chunk_proofs: list[Proof], rule_proof: Proof) -> bool:
    """The rule proof's hash of its input c equals chunk proof c's hash of its outputs, for every c
    (the rule proof's last hashed input is the hints)."""
    parts = rule_proof.input_hashes[: len(chunk_proofs)]
    return len(rule_proof.input_hashes) == len(chunk_proofs) + 1 and parts == [
        p.output_hashes[0] if len(p.output_hashes) == 1 else None for p in chunk_proofs
    ]


def split_round_circuits(
    trainers: int, dim: int, chunks: int, columns: int | None, commitment: str = "poseidon"
) -> tuple[CircuitSpec, CircuitSpec]:
    """(chunk circuit, rule circuit) of a round proven in `chunks` parameter chunks, before they
    are built; the chunks' inputs bound by `commitment` (the rule proof's are hashed)."""
    if commitment not in ("polycommit", "poseidon"):
        raise ZKError(f"round inputs are committed by polycommit or poseidon, not {commitment!r}")
    size = chunk_size(dim, chunks)
    chunk = GramChunk(trainers, size, packed=commitment == "poseidon").double()
    chunk_example = (
        [torch.zeros(1, size, dtype=torch.float64)] * trainers
        + [torch.zeros(1, chunk.model_width, dtype=torch.float64)] * 2
        + [torch.zeros(1, trainers, dtype=torch.float64)]
    )
    chunk_args = RunArgs(
        num_inner_cols=columns,
        input_visibility="polycommit" if commitment == "polycommit" else "hashed",
        output_visibility="hashed",
        rebase_frac_zero_constants=True,  # products with integral constants need no rescale
    )
    rule = ChunkedRoundRule(trainers, dim, chunks).double()
    hints = _hints(
        RoundStatement([np.zeros(dim)] * trainers, 1, 0, start=np.zeros(dim)), np.zeros(advice_count(trainers))
    )
    rule_example = [torch.zeros(1, chunk_outputs(trainers), dtype=torch.float64)] * chunks + [torch.from_numpy(hints)]
    # the rule proof's inputs go unchecked: the parts are the chunk proofs' outputs (the same field
    # elements, by the linking hashes), computed there from range-checked inputs and range-checked
    # as outputs; every hint enters a comparison (which range-checks it), is masked out with an
    # absent slot or is echoed to an output; and the outputs are compared with chain state
    rule_args = RunArgs(num_inner_cols=columns, rebase_frac_zero_constants=True, range_check_io=False)
    suffix = "-kzg" if commitment == "polycommit" else ""
    return (
        CircuitSpec(f"round-chunk-L{trainers}-n{size}{suffix}", chunk, chunk_example, chunk_args),
        CircuitSpec(f"round-rule-L{trainers}-d{dim}-p{chunks}", rule, rule_example, rule_args),
    )


def build_split_round(
    trainers: int, dim: int, chunks: int, settings: Settings | None = None, *, commitment: str = "poseidon"
) -> SplitBuilds:
    """Both circuits of a split round, from the build cache and SRS in the settings."""
    settings = settings or load_settings()
    chunk, rule = split_round_circuits(trainers, dim, chunks, settings.zk_columns, commitment)
    return SplitBuilds(
        chunk.build(settings.zk_cache_dir, settings.zk_srs_path),
        rule.build(settings.zk_cache_dir, settings.zk_srs_path),
        trainers,
        dim,
        chunks,
    )


def _hints(statement: RoundStatement, advice: np.ndarray) -> np.ndarray:
    """The rule's hints input (the prover's advice, then the public values), as the one proof's."""
    return statement.inputs(statement.start, advice, packed=False)[-1]


def _padded(values: np.ndarray, part: slice, size: int) -> np.ndarray:
    chunk = np.asarray(values, dtype=np.float64).ravel()[part]
    return np.pad(chunk, (0, size - chunk.size)).reshape(1, size)


def chunk_inputs(
    statement: RoundStatement, aggregate: np.ndarray, mask: list[bool], chunks: int, packed: bool
) -> list[list[np.ndarray]]:
    """Each chunk proof's inputs: the chunk of every slot's model (zeros for an absent slot), of
    the start model and of the aggregate (zero-padded to the chunk size, then packed in pairs
    when `packed`), and the mask."""
    dim = statement.dim
    size = chunk_size(dim, chunks)
    flags = np.array([[1.0 if k else 0.0 for k in mask]])

    def model(values: np.ndarray, part: slice) -> np.ndarray:
        padded = _padded(values, part, size)
        return pack_pairs(padded).reshape(1, -1) if packed else padded

    return [
        [
            *(np.zeros((1, size)) if m is None else _padded(m, part, size) for m in statement.models),
            model(statement.start, part),
            model(aggregate, part),
            flags,
        ]
        for part in chunk_slices(dim, chunks)
    ]


def chunk_commitments(build: CircuitBuild, values: np.ndarray, chunks: int, *, global_model: bool = False) -> list[str]:
    """A model's commitments in a round proven by chunks with the chunk circuit `build`: one per
    chunk, zero-padded to the chunk size, as round_proof.model_commitment makes one of a model (a
    global model packed in pairs under a hashed build)."""
    dim = int(np.asarray(values).size)
    size = chunk_size(dim, chunks)
    return [
        model_commitment(build, _padded(values, part, size).ravel(), global_model=global_model)
        for part in chunk_slices(dim, chunks)
    ]


def split_commitment(build: CircuitBuild, values: np.ndarray, chunks: int, *, global_model: bool = False) -> str:
    """A model's commitment on chain in a market whose rounds are proven by chunks with the
    (hashed) chunk circuit `build`: the list commitment to its chunks' Poseidon hashes."""
    if build.commitment != "poseidon":
        raise ZKError("a split round's commitments on chain combine Poseidon hashes: the chunk circuit must hash")
    return list_commitment([int(h, 16) for h in chunk_commitments(build, values, chunks, global_model=global_model)])


def proof_chunk_commitments(chunk: CircuitBuild, trainers: int, proof: Proof) -> list[str]:
    """The commitments a proof of the chunk circuit `chunk` of `trainers` slots carries for its
    model inputs (each slot's chunk, then the start model's and the aggregate's): its input
    hashes, or keccak of its input points. Its last input, the mask, is checked by nobody: the
    rule proof pins the mask."""
    count = trainers + 2
    if chunk.commitment == "polycommit":
        return [point_commitment(p) for p in proof_commitments(proof.proof_json, count)]
    return [to_bytes32(h) for h in proof.input_hashes[:count]]


def _part(w: Witness, scale: int) -> np.ndarray:
    """A chunk witness's outputs (field elements at `scale`) as the grid values the rule proof takes."""
    return np.array([w.outputs[0]], dtype=np.float64) / float(1 << scale)


def _witnesses(builds: SplitBuilds, statement: RoundStatement, result: RoundResult):
    packed = builds.chunk.commitment == "poseidon"
    chunk_ws = [
        witness(builds.chunk, inputs)
        for inputs in chunk_inputs(statement, result.aggregate, result.mask, builds.chunks, packed)
    ]
    scale = int(builds.chunk.settings()["model_output_scales"][0])
    rule_w = witness(builds.rule, [*(_part(w, scale) for w in chunk_ws), _hints(statement, result.advice)])
    return chunk_ws, rule_w


@dataclass(frozen=True)
class SplitWitnesses:
    """What a split round's proofs are made from: the round as proven, each chunk's witness and the
    rule's."""

    result: RoundResult
    chunks: list[Witness]
    rule: Witness


def split_witnesses(builds: SplitBuilds, statement: RoundStatement) -> SplitWitnesses:
    """The witnesses of the float statement by chunks, checked before any proving: as
    round_proof.prove_round, the circuit's mask where its rounding decides a comparison the other
    way, every chunk under the rule's mask, and the rule valid (`ProofMismatchError` otherwise)."""
    if (statement.trainers, statement.dim) != (builds.trainers, builds.dim):
        raise ZKError(
            f"the split round circuits are for {builds.trainers} slots of {builds.dim} parameters, "
            f"not {statement.trainers} of {statement.dim}"
        )
    result = evaluate(statement, builds.chunks)
    chunk_ws, rule_w = _witnesses(builds, statement, result)
    if (again := circuit_mask_result(statement, result, rule_w.outputs[2])) is not None:
        result = again
        chunk_ws, rule_w = _witnesses(builds, statement, result)
    _, _, final_mask, (valid,) = rule_w.outputs
    if [bool(m) for m in final_mask] != result.mask:
        raise ProofMismatchError(f"in-circuit mask {final_mask} differs from the float mask {result.mask}")
    if valid != 1:
        raise ProofMismatchError("the circuit rejected a chunk's aggregate, the square roots or the order thresholds")
    return SplitWitnesses(result, chunk_ws, rule_w)


def prove_split_round(builds: SplitBuilds, statement: RoundStatement) -> SplitRoundProof:
    """Prove the float statement by chunks (split_witnesses), the proofs linked (checked before
    they are returned)."""
    w = split_witnesses(builds, statement)
    proof = SplitRoundProof(
        [prove_witness(c) for c in w.chunks], prove_witness(w.rule), w.result.mask, w.result.aggregate, w.result.reasons
    )
    if not proof.links:
        raise ProofMismatchError("the rule proof's inputs are not the chunk proofs' outputs")
    return proof
