"""The proof system behind one module: what the chain checks (DESIGN.md section 4), built and
proven with EZKL (fedmarket/zk/ezkl). Everything outside fedmarket/zk uses these names only.

- the round statement (round_circuit, round_proof): the outlier rule's mask and the aggregate;
  past one proof's memory, proven by parameter chunks (round_split); a market uses either
  layout through market_round;
- the norm-bound statement (norm_proof): a secure-aggregation trainer's update norm, under its
  commitment;
- the settlement statement (settlement_circuit, settlement_proof), one proof per round:
  accuracy and contributions, bound to the owner's committed test chunks and the contract's
  RLOO subsets;
- commitments to grid values (a proven market's model commitment opens with the round circuit's
  KZG point and the Poseidon hash the settlement circuit uses), the verifiers deployed for a
  circuit, and the build cache.
"""

from fedmarket.zk.ezkl.cache import CachedBuild, cached_builds, expected_prove_s, prune
from fedmarket.zk.ezkl.deploy import (
    DeployedVerifier,
    deploy_round_verifier,
    deploy_settlement_verifier,
    deploy_split_round_verifier,
    deployed_round_verifier_code,
    deployed_verifier_code,
)
from fedmarket.zk.ezkl.polycommit import POINT_BYTES, combines_to, commit_elements, commit_values, proof_commitments
from fedmarket.zk.ezkl.poseidon import packed_commitment, poseidon_commitment
from fedmarket.zk.ezkl.prover import Proof, prove, verify_locally
from fedmarket.zk.ezkl.toolchain import CircuitBuild, CircuitShape, CircuitSpec, RunArgs, build_circuit
from fedmarket.zk.ezkl.verifier import check_verifier, verifier_artifact
from fedmarket.zk.market_round import (
    MAX_ROUND_CHUNKS,
    RoundCircuit,
    RoundLayout,
    build_market_round,
    check_round_verifiers,
    deploy_market_round_verifier,
    expected_round_prove_s,
    prove_market_round,
    round_model_commitment,
    verifier_builds,
)
from fedmarket.zk.norm_proof import (
    NormProof,
    build_norm_circuit,
    clip_to_bound,
    norm_domain,
    prove_norm,
    sum_is_proven,
    verify_norm,
)
from fedmarket.zk.round_proof import (
    RoundProof,
    RoundStatement,
    build_round_circuit,
    circuit_verdict,
    evaluate,
    model_commitment,
    prove_round,
    round_circuit,
)
from fedmarket.zk.round_split import (
    SplitBuilds,
    SplitRoundProof,
    build_split_round,
    chunk_commitments,
    prove_split_round,
    split_commitment,
    split_round_circuits,
    split_witnesses,
)
from fedmarket.zk.settlement_proof import (
    MAX_SETTLEMENT_PARTS,
    DataChunks,
    SettlementProof,
    SettlementStatement,
    build_settlement_circuit,
    chunk_rows,
    part_rows,
    prove_settlement,
    rloo_subsets,
    round_rloo_seed,
    round_test_chunk,
    settlement_circuit_spec,
    split_by_chunks,
)

__all__ = [
    "MAX_ROUND_CHUNKS",
    "MAX_SETTLEMENT_PARTS",
    "CachedBuild",
    "CircuitBuild",
    "CircuitShape",
    "CircuitSpec",
    "DataChunks",
    "DeployedVerifier",
    "NormProof",
    "POINT_BYTES",
    "Proof",
    "RoundCircuit",
    "RoundLayout",
    "RoundProof",
    "RoundStatement",
    "RunArgs",
    "SettlementProof",
    "SettlementStatement",
    "SplitBuilds",
    "SplitRoundProof",
    "build_circuit",
    "build_market_round",
    "build_norm_circuit",
    "build_round_circuit",
    "build_settlement_circuit",
    "build_split_round",
    "cached_builds",
    "check_round_verifiers",
    "check_verifier",
    "chunk_commitments",
    "chunk_rows",
    "circuit_verdict",
    "clip_to_bound",
    "combines_to",
    "commit_elements",
    "commit_values",
    "deploy_market_round_verifier",
    "deploy_round_verifier",
    "deploy_settlement_verifier",
    "deploy_split_round_verifier",
    "deployed_round_verifier_code",
    "deployed_verifier_code",
    "evaluate",
    "expected_prove_s",
    "expected_round_prove_s",
    "model_commitment",
    "norm_domain",
    "packed_commitment",
    "poseidon_commitment",
    "proof_commitments",
    "prove",
    "prove_market_round",
    "prove_norm",
    "prove_round",
    "part_rows",
    "prove_settlement",
    "prove_split_round",
    "prune",
    "rloo_subsets",
    "round_circuit",
    "round_model_commitment",
    "round_rloo_seed",
    "round_test_chunk",
    "settlement_circuit_spec",
    "split_by_chunks",
    "split_commitment",
    "split_round_circuits",
    "split_witnesses",
    "sum_is_proven",
    "verifier_artifact",
    "verifier_builds",
    "verify_locally",
    "verify_norm",
]
