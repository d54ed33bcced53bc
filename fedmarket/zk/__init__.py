"""EZKL toolchain: circuits exported from torch, builds cached by circuit hash, proofs, and the
generated Solidity verifiers the markets call (DESIGN.md section 4; README, "What is real, and what is not yet")."""

from fedmarket.zk.fixed_point import FRAC_BITS, STEP, poseidon_commitment, quantize
from fedmarket.zk.prover import Proof, prove, verify_locally
from fedmarket.zk.round_proof import RoundProof, RoundStatement, build_round_circuit, evaluate, prove_round
from fedmarket.zk.toolchain import CircuitBuild, RunArgs, build_circuit
from fedmarket.zk.verifier import verifier_artifact

__all__ = [
    "FRAC_BITS",
    "STEP",
    "CircuitBuild",
    "Proof",
    "RoundProof",
    "RoundStatement",
    "RunArgs",
    "build_circuit",
    "build_round_circuit",
    "evaluate",
    "poseidon_commitment",
    "prove",
    "prove_round",
    "quantize",
    "verifier_artifact",
    "verify_locally",
]
