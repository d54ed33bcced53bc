"""One round's statement, in float and as a proof (fedmarket/zk/round_circuit.py).

The aggregator computes the float mask and aggregate, proves them, and refuses to send a proof
whose in-circuit mask differs from the float one (`ProofMismatchError`). The aggregate on chain is
the float mean rounded onto the grid; it differs from the float mean of the unrounded models by
at most 2^-8 per entry (half a step from rounding the models, half from rounding the mean), the
bound tests/test_zk.py checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedmarket.errors import ProofMismatchError, ZKError
from fedmarket.zk.fixed_point import domain_limbs, quantize, to_bytes32
from fedmarket.zk.prover import Proof, prove
from fedmarket.zk.round_circuit import RoundCircuit, grid_sqrt
from fedmarket.settings import Settings, load_settings
from fedmarket.zk.toolchain import CircuitBuild, RunArgs, build_circuit
from fedmarket.zk.verifier import market_proof


@dataclass(frozen=True)
class RoundStatement:
    """A round as the circuit sees it: one slot per registered trainer (None: no submission),
    models already on the grid; `kept_before`: the previous round's benign mask as the contract
    holds it (bit i: trainer i kept; 0 in round 1)."""

    models: list[np.ndarray | None]
    round: int
    domain: int
    kept_before: int = 0

    @property
    def trainers(self) -> int:
        return len(self.models)

    @property
    def dim(self) -> int:
        for m in self.models:
            if m is not None:
                return int(np.asarray(m).size)
        raise ZKError(f"round {self.round} has no submission to prove")

    def circuit(self) -> RoundCircuit:
        return RoundCircuit(self.trainers, self.dim).double()

    def inputs(self, aggregate: np.ndarray, roots: np.ndarray) -> list[np.ndarray]:
        d, L = self.dim, self.trainers
        slots = [np.zeros((1, d)) if m is None else np.asarray(m, dtype=np.float64).reshape(1, d) for m in self.models]
        present = [0.0 if m is None else 1.0 for m in self.models]
        kept_before = [float(self.kept_before >> i & 1) for i in range(L)]
        public = np.concatenate([[1.0 if self.round == 1 else 0.0], present, kept_before, domain_limbs(self.domain)])
        return [*slots, np.asarray(aggregate).reshape(1, d), np.asarray(roots).reshape(1, -1), public.reshape(1, -1)]


@dataclass(frozen=True)
class RoundResult:
    mask: list[bool]
    aggregate: np.ndarray  # on the grid
    roots: np.ndarray


def evaluate(statement: RoundStatement) -> RoundResult:
    """The float statement: the module run in float64 with exact square roots."""
    circuit = statement.circuit()
    zeros = np.zeros(statement.dim)
    with torch.no_grad():
        y = circuit.squared_distances(*_tensors(statement.inputs(zeros, np.zeros(statement.trainers)))).numpy()[0]
        roots = grid_sqrt(y)
        _, _, mask, _ = circuit(*_tensors(statement.inputs(zeros, roots)))
    kept = mask.numpy()[0] > 0.5
    if not kept.any():
        raise ZKError("the rule kept no model: nothing to aggregate")
    models = np.stack([statement.models[i] for i in np.flatnonzero(kept)])
    return RoundResult([bool(k) for k in kept], quantize(models.mean(axis=0)), roots)


def _tensors(arrays: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)) for a in arrays]


@dataclass(frozen=True)
class RoundProof:
    proof: Proof
    mask: list[bool]
    present: list[bool]
    aggregate: np.ndarray

    @property
    def benign_mask(self) -> int:
        return sum(1 << i for i, k in enumerate(self.mask) if k)

    @property
    def aggregate_commitment(self) -> str:
        return to_bytes32(self.proof.input_hashes[len(self.mask)])

    def calldata(self) -> bytes:
        """The `proof` argument of `finalizeRound`: the Halo2 proof and the instances the statement
        leaves free (contracts/src/EzklRoundVerifier.sol): the hashes of absent slots, of the
        roots and of the public tensor."""
        hashes, slots = self.proof.input_hashes, len(self.mask)
        free = [hashes[i] for i in range(slots) if not self.present[i]] + hashes[slots + 1 : slots + 3]
        return market_proof(self.proof.proof, free)


def prove_round(build: CircuitBuild, statement: RoundStatement) -> RoundProof:
    result = evaluate(statement)
    proof = prove(build, statement.inputs(result.aggregate, result.roots))
    _, _, circuit_mask, (valid,) = proof.outputs
    if [bool(m) for m in circuit_mask] != result.mask:
        raise ProofMismatchError(f"in-circuit mask {circuit_mask} differs from the float mask {result.mask}")
    if valid != 1:
        raise ProofMismatchError("the circuit rejected the aggregate or the square roots")
    return RoundProof(proof, result.mask, [m is not None for m in statement.models], result.aggregate)


def build_round_circuit(trainers: int, dim: int, settings: Settings | None = None) -> CircuitBuild:
    """The round circuit for L = `trainers` slots of `dim` parameters, from the build cache
    (`FEDMARKET_ZK_CACHE_DIR`) and SRS (`FEDMARKET_ZK_SRS_PATH`, else gen_srs) in the settings."""
    settings = settings or load_settings()
    statement = RoundStatement([np.zeros(dim)] * trainers, 1, 0)
    example = _tensors(statement.inputs(np.zeros(dim), np.zeros(trainers)))
    return build_circuit(
        f"round-L{trainers}-d{dim}", statement.circuit(), example, settings.zk_cache_dir, srs_path=settings.zk_srs_path,
        run_args=RunArgs(num_inner_cols=settings.zk_columns),
    )
