"""The round circuit a market's round verifier names, as its parties use it: one proof of the
round circuit (round_proof.py), its inputs hashed or under KZG commitments, or a round proven by
parameter chunks (round_split.py). One layout per verifier kind (IVerifierFactory.VerifierKind);
the trainers commit, the aggregator proves and a client checks the verifiers through the
functions here, whichever the layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from eth_account.signers.local import LocalAccount

from fedmarket.chain import FactoryClient
from fedmarket.errors import ZKError
from fedmarket.settings import Settings
from fedmarket.zk.ezkl.cache import expected_prove_s
from fedmarket.zk.ezkl.deploy import DeployedVerifier, deploy_round_verifier, deploy_split_round_verifier
from fedmarket.zk.ezkl.toolchain import CircuitBuild
from fedmarket.zk.ezkl.verifier import check_verifier
from fedmarket.zk.round_proof import RoundProof, RoundStatement, build_round_circuit, model_commitment, prove_round
from fedmarket.zk.round_split import (
    SplitBuilds,
    SplitRoundProof,
    build_split_round,
    prove_split_round,
    split_commitment,
)

RoundCircuit = CircuitBuild | SplitBuilds
MAX_ROUND_CHUNKS = 16  # EzklSplitRoundVerifier.MAX_CHUNKS


@dataclass(frozen=True)
class RoundLayout:
    """How a market's rounds are proven: `commitment` binds the models ("poseidon" or
    "polycommit"), in `chunks` parameter chunks (1: one proof; more: a split round, hashed)."""

    commitment: str = "poseidon"
    chunks: int = 1

    def __post_init__(self) -> None:
        if self.commitment not in ("poseidon", "polycommit"):
            raise ZKError(f"round inputs are committed by polycommit or poseidon, not {self.commitment!r}")
        if not 1 <= self.chunks <= MAX_ROUND_CHUNKS or (self.chunks > 1 and self.commitment != "poseidon"):
            raise ZKError(
                f"a round in {self.chunks} chunks under {self.commitment}: 1 to {MAX_ROUND_CHUNKS}, hashed when split"
            )

    @classmethod
    def of_verifier(cls, kind: str, chunks: int = 0) -> RoundLayout:
        """The layout of a round verifier of this kind (fedmarket.chain.VerifierInfo)."""
        if kind == "split_round" and chunks >= 2:
            return cls(chunks=chunks)
        if kind in ("round", "kzg_round"):
            return cls("polycommit" if kind == "kzg_round" else "poseidon")
        raise ZKError(f"a verifier of kind {kind!r} in {chunks} chunks proves no round")

    @property
    def split(self) -> bool:
        return self.chunks > 1


def build_market_round(layout: RoundLayout, trainers: int, dim: int, settings: Settings | None = None) -> RoundCircuit:
    """The circuit(s) of rounds of `trainers` slots and `dim` parameters under `layout`, from the
    build cache."""
    if layout.split:
        return build_split_round(trainers, dim, layout.chunks, settings, commitment=layout.commitment)
    return build_round_circuit(trainers, dim, settings, commitment=layout.commitment)


def round_model_commitment(circuit: RoundCircuit, values: np.ndarray, *, global_model: bool = False) -> str:
    """A model's commitment on chain in a market proven by `circuit` (round_proof.model_commitment;
    for a split round, round_split.split_commitment)."""
    if isinstance(circuit, SplitBuilds):
        return split_commitment(circuit.chunk, values, circuit.chunks, global_model=global_model)
    return model_commitment(circuit, values, global_model=global_model)


def prove_market_round(circuit: RoundCircuit, statement: RoundStatement) -> RoundProof | SplitRoundProof:
    if isinstance(circuit, SplitBuilds):
        return prove_split_round(circuit, statement)
    return prove_round(circuit, statement)


def expected_round_prove_s(circuit: RoundCircuit) -> float | None:
    """The last proofs' median time of a round on this machine (a split round's chunk circuit
    proves once per chunk); None before every build has proven once."""
    if isinstance(circuit, SplitBuilds):
        rule, chunk = expected_prove_s(circuit.rule.dir), expected_prove_s(circuit.chunk.dir)
        return None if rule is None or chunk is None else rule + circuit.chunks * chunk
    return expected_prove_s(circuit.dir)


def verifier_builds(circuit: RoundCircuit) -> list[CircuitBuild]:
    """The builds whose EZKL verifiers a round adapter calls, in the order
    deploy.deployed_round_verifier_code reads them: a split round's rule circuit, then its chunk
    circuit."""
    return [circuit.rule, circuit.chunk] if isinstance(circuit, SplitBuilds) else [circuit]


def check_round_verifiers(circuit: RoundCircuit, codes: list[bytes]) -> None:
    """verifier.check_verifier for each EZKL verifier behind a round adapter (verifier_builds)."""
    builds = verifier_builds(circuit)
    if len(codes) != len(builds):
        raise ZKError(f"the round adapter has {len(codes)} EZKL verifiers, this layout {len(builds)}")
    for build, code in zip(builds, codes):
        check_verifier(build, code)


def deploy_market_round_verifier(
    factory: FactoryClient, account: LocalAccount, circuit: RoundCircuit, trainers: int
) -> DeployedVerifier:
    if isinstance(circuit, SplitBuilds):
        return deploy_split_round_verifier(factory, account, *verifier_builds(circuit), trainers, circuit.chunks)
    return deploy_round_verifier(factory, account, circuit, trainers)
