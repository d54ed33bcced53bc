"""One round's statement, in float and as a proof: the rule `two_stage_proven`
(fedmarket/algorithms/outliers/proven.py), whose module is the circuit.

The aggregator computes the float mask and aggregate and proves them; where the circuit's rounding
gives another mask (a model within a step of a threshold) it proves the circuit's instead, and it
never sends a proof whose mask or aggregate the circuit rejects (`ProofMismatchError`). The aggregate on chain is
the float mean rounded onto the grid; it differs from the float mean of the unrounded models by
at most 2^-8 per entry (half a step from rounding the models, half from rounding the mean), the
bound tests/test_zk.py checks.

The circuit binds its inputs one of two ways (`build_round_circuit`'s `commitment`), and a
model's commitment on chain is what that way makes of it (`model_commitment`):
- "polycommit": under KZG commitments its proof carries (EZKL `polycommit`), keccak of the point
  on chain. Hashing the inputs with Poseidon in the circuit took more rows than its arithmetic.
- "poseidon": each input hashed in the circuit, the hash on chain; the start model and the
  aggregate hashed two values per element (fedmarket/packing.py), half their hashing rows. A
  market that proves its settlement needs it: the settlement circuit reads Poseidon commitments,
  and a KZG point is tied to its circuit's domain, so one point cannot bind both proofs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from fedmarket.algorithms.outliers.proven import (
    ProvenRoundRule,
    advice_count,
    circuit_advice,
    float_verdict,
    root_count,
    statement_inputs,
)
from fedmarket.errors import ProofMismatchError, ZKError
from fedmarket.field import to_bytes32
from fedmarket.fixed_point import on_grid, quantize
from fedmarket.settings import Settings, load_settings
from fedmarket.zk.ezkl.polycommit import commit_values, point_commitment, proof_commitments
from fedmarket.zk.ezkl.poseidon import packed_commitment, poseidon_commitment
from fedmarket.zk.ezkl.prover import Proof, circuit_outputs, prove_witness, witness
from fedmarket.zk.ezkl.toolchain import CircuitBuild, CircuitSpec, RunArgs
from fedmarket.zk.ezkl.verifier import market_proof

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundStatement:
    """A round as the circuit sees it: one slot per registered trainer (None: no submission),
    models already on the grid; `start`: the round's global model (its commitment is the
    contract's `modelCommitment`); `kept_before`: the previous round's benign mask as the contract
    holds it (bit i: trainer i kept; 0 in round 1)."""

    models: list[np.ndarray | None]
    round: int
    domain: int
    kept_before: int = 0
    start: np.ndarray = field(kw_only=True)

    @property
    def trainers(self) -> int:
        return len(self.models)

    @property
    def dim(self) -> int:
        for m in self.models:
            if m is not None:
                return int(np.asarray(m).size)
        raise ZKError(f"round {self.round} has no submission to prove")

    @property
    def kept_before_flags(self) -> list[bool]:
        return [bool(self.kept_before >> i & 1) for i in range(self.trainers)]

    def circuit(self, packed: bool) -> ProvenRoundRule:
        return ProvenRoundRule(self.trainers, self.dim, packed).double()

    def inputs(self, aggregate: np.ndarray, advice: np.ndarray, packed: bool) -> list[np.ndarray]:
        return statement_inputs(
            self.models, self.start, self.round == 1, self.kept_before_flags, self.domain, aggregate, advice, packed
        )


@dataclass(frozen=True)
class RoundResult:
    mask: list[bool]
    aggregate: np.ndarray  # on the grid
    advice: np.ndarray  # the prover's roots and order thresholds (circuit_advice)
    reasons: list[str]  # per slot, why it was left out ("" if kept or absent)

    @property
    def roots(self) -> np.ndarray:
        return self.advice[: root_count(len(self.mask))]


def evaluate(statement: RoundStatement, chunks: int = 1) -> RoundResult:
    """The float statement: the module run in float64, and the advice the circuit is given (its
    Gram matrix proven in `chunks` parameter chunks, fedmarket/zk/round_split.py)."""
    rule = (statement.models, statement.start, statement.round == 1, statement.kept_before_flags, statement.domain)
    verdict = float_verdict(*rule)
    advice = circuit_advice(*rule, verdict.roots, chunks)
    mask = [bool(k) for k in verdict.mask]
    if not any(mask):  # the global model stays as it was, as in an unproven round (the circuit requires it)
        return RoundResult(mask, quantize(statement.start), advice, verdict.reasons)
    models = np.stack([statement.models[i] for i in np.flatnonzero(verdict.mask)])
    return RoundResult(mask, quantize(models.mean(axis=0)), advice, verdict.reasons)


def _tensors(arrays: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)) for a in arrays]


@dataclass(frozen=True)
class RoundProof:
    proof: Proof
    mask: list[bool]
    present: list[bool]
    aggregate: np.ndarray
    reasons: list[str]
    commitment: str  # how the circuit binds its inputs: "polycommit" or "poseidon"

    @property
    def benign_mask(self) -> int:
        return mask_bits(self.mask)

    def summary(self) -> str:
        """One line for the round's log: how it was proven, in how long, and the proof's size."""
        p = self.proof
        return f"{self.commitment} inputs in {p.prove_s:.1f} s (witness {p.witness_s:.1f} s), proof {p.size} bytes"

    @property
    def aggregate_commitment(self) -> str:
        slots = len(self.mask)
        if self.commitment == "polycommit":
            return point_commitment(proof_commitments(self.proof.proof_json, slots + 2)[slots + 1])
        return to_bytes32(self.proof.input_hashes[slots + 1])

    def calldata(self) -> bytes:
        """The `proof` argument of `finalizeRound`: the Halo2 proof and the instances the statement
        leaves free. Under polycommit none (contracts/src/EzklKzgRoundVerifier.sol); hashed
        (EzklRoundVerifier.sol): the hashes of absent slots and of the hints (advice and public values)."""
        if self.commitment == "polycommit":
            return market_proof(self.proof.proof, [])
        hashes, slots = self.proof.input_hashes, len(self.mask)
        free = [hashes[i] for i in range(slots) if not self.present[i]] + [hashes[slots + 2]]
        return market_proof(self.proof.proof, free)


def mask_bits(mask: list[bool]) -> int:
    """A mask as the contract holds it: bit i set where slot i is kept."""
    return sum(1 << i for i, k in enumerate(mask) if k)


def model_commitment(build: CircuitBuild, values: np.ndarray, *, global_model: bool = False) -> str:
    """The commitment a market whose rounds `build` proves records for a model on the grid: keccak
    of the KZG point its proofs carry for it, or under a hashed build its Poseidon hash, of the
    values packed in pairs for a `global_model` (the initial model, an aggregate), one per element
    for an update."""
    if build.commitment == "polycommit":
        if not on_grid(values):  # EZKL would round them: another model would share the commitment
            raise ZKError("commitments are to values on the 2^-8 grid: quantize() first")
        return point_commitment(commit_values(build, values))
    return packed_commitment(values) if global_model else poseidon_commitment(values)


def _packed(commitment: str) -> bool:
    """Whether a round circuit whose inputs are bound by `commitment` takes the global models
    packed: a hashed one does."""
    return commitment == "poseidon"


def circuit_verdict(build: CircuitBuild, statement: RoundStatement) -> tuple[list[bool], bool]:
    """The circuit's mask and `valid` for the float statement's aggregate and advice, from the
    witness alone (what the proof would carry; no proving)."""
    result = evaluate(statement)
    _, _, mask, (valid,) = circuit_outputs(
        build, statement.inputs(result.aggregate, result.advice, _packed(build.commitment))
    )
    return [bool(m) for m in mask], valid == 1


def prove_round(build: CircuitBuild, statement: RoundStatement) -> RoundProof:
    """Prove the float statement. Where the circuit's rounding decides a comparison the other way
    (a model within a rounding step of a threshold), the circuit's mask is the rule the chain
    verifies: the round is aggregated again under it rather than left unproven, so no trainer can
    stall a round by sitting on a threshold. The mask is read from the witness: one proof either way."""
    result = evaluate(statement)
    w = witness(build, statement.inputs(result.aggregate, result.advice, _packed(build.commitment)))
    if (again := circuit_mask_result(statement, result, w.outputs[2])) is not None:
        result = again
        w = witness(build, statement.inputs(result.aggregate, result.advice, _packed(build.commitment)))
    proof = prove_witness(w)
    _, _, final_mask, (valid,) = proof.outputs
    if [bool(m) for m in final_mask] != result.mask:
        raise ProofMismatchError(f"in-circuit mask {final_mask} differs from the float mask {result.mask}")
    if valid != 1:
        raise ProofMismatchError("the circuit rejected the aggregate, the square roots or the order thresholds")
    present = [m is not None for m in statement.models]
    return RoundProof(proof, result.mask, present, result.aggregate, result.reasons, build.commitment)


def circuit_mask_result(statement: RoundStatement, result: RoundResult, circuit_mask: list[int]) -> RoundResult | None:
    """Where the circuit's mask (a witness's output) differs from the float one, the round under it
    (under_mask), logged; None where they agree."""
    mask = [bool(m) for m in circuit_mask]
    if mask == result.mask:
        return None
    log.warning(
        "round %d: the circuit's mask %s differs from the float one %s; proving it", statement.round, mask, result.mask
    )
    return under_mask(statement, result, mask)


def under_mask(statement: RoundStatement, result: RoundResult, mask: list[bool]) -> RoundResult:
    """The round aggregated under the circuit's mask: the mean of the models it keeps, or, where it
    keeps nobody, the global model as it was (what the circuit then requires)."""
    kept = [statement.models[i] for i, k in enumerate(mask) if k]
    aggregate = quantize(np.mean(kept, axis=0)) if kept else quantize(statement.start)
    reasons = [
        "" if k else why or "left out by the circuit's rounding at a threshold (proven rule)"
        for k, why in zip(mask, result.reasons)
    ]
    return RoundResult(mask, aggregate, result.advice, reasons)


def build_round_circuit(
    trainers: int, dim: int, settings: Settings | None = None, *, commitment: str = "polycommit"
) -> CircuitBuild:
    """The round circuit for L = `trainers` slots of `dim` parameters, its inputs bound by
    `commitment` ("polycommit" or "poseidon", the module docstring), from the build cache
    (`FEDMARKET_ZK_CACHE_DIR`) and SRS (`FEDMARKET_ZK_SRS_PATH`, else gen_srs) in the settings."""
    settings = settings or load_settings()
    return round_circuit(trainers, dim, settings.zk_columns, commitment).build(
        settings.zk_cache_dir, settings.zk_srs_path
    )


def round_circuit(trainers: int, dim: int, columns: int | None, commitment: str = "polycommit") -> CircuitSpec:
    """The round circuit before it is built (`.shape` lays it out without setting it up)."""
    if commitment not in ("polycommit", "poseidon"):
        raise ZKError(f"round inputs are committed by polycommit or poseidon, not {commitment!r}")
    packed = _packed(commitment)
    statement = RoundStatement([np.zeros(dim)] * trainers, 1, 0, start=np.zeros(dim))
    example = _tensors(statement.inputs(np.zeros(dim), np.zeros(advice_count(trainers)), packed))
    run_args = RunArgs(
        num_inner_cols=columns,
        input_visibility="polycommit" if commitment == "polycommit" else "hashed",
        rebase_frac_zero_constants=True,  # products with integral constants need no rescale
    )
    name = f"round-L{trainers}-d{dim}" + ("-kzg" if commitment == "polycommit" else "")
    return CircuitSpec(name, statement.circuit(packed), example, run_args)
