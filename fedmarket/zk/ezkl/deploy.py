"""Verifiers on chain, once per circuit, chain and factory: EZKL's generated Halo2Verifier, and
the adapter that lays a market's instances out as the circuit's (contracts/src/EzklRoundVerifier.sol,
EzklKzgRoundVerifier.sol for a round circuit whose inputs are under KZG commitments),
deployed by the market factory, which records it: a market may name only the factory's adapters.

A deployment is recorded in the build directory per chain id and factory and reused while its
code is still on that chain (a restarted dev chain has none), so every market of the same shape
references the same verifier."""

from __future__ import annotations

import json
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from fedmarket.chain import Chain, FactoryClient
from fedmarket.chain.artifacts import load_artifact
from fedmarket.zk.ezkl.toolchain import CircuitBuild
from fedmarket.zk.ezkl.verifier import verifier_artifact


@dataclass(frozen=True)
class DeployedVerifier:
    halo2: str  # EZKL's generated verifier
    adapter: str  # what a market's spec references
    deploy_gas: int


def _deploy(
    factory: FactoryClient, account: LocalAccount, build: CircuitBuild, kind: str, *shape: int
) -> DeployedVerifier:
    chain = factory.chain
    record = build.dir / f"deployed-{chain.chain_id}-{factory.address}-{kind}-{'-'.join(map(str, shape))}.json"
    if record.is_file():
        known = DeployedVerifier(**json.loads(record.read_text()))
        if chain.has_code(known.halo2) and chain.has_code(known.adapter):
            return known
    halo2, first = chain.deploy_artifact(account, verifier_artifact(build))
    if kind == "round":
        adapter, second = factory.deploy_round_verifier(
            account, halo2.address, *shape, kzg=build.commitment == "polycommit"
        )
    else:
        adapter, second = factory.deploy_settlement_verifier(account, halo2.address, *shape)
    deployed = DeployedVerifier(halo2.address, adapter, first.gas_used + second.gas_used)
    record.write_text(json.dumps(deployed.__dict__))
    return deployed


def deploy_round_verifier(
    factory: FactoryClient, account: LocalAccount, build: CircuitBuild, trainers: int
) -> DeployedVerifier:
    return _deploy(factory, account, build, "round", trainers)


def deploy_settlement_verifier(
    factory: FactoryClient, account: LocalAccount, build: CircuitBuild, trainers: int, samples: int
) -> DeployedVerifier:
    return _deploy(factory, account, build, "settlement", trainers, samples)


def deploy_split_round_verifier(
    chain: Chain, account: LocalAccount, rule: CircuitBuild, chunk: CircuitBuild, trainers: int, chunks: int
) -> DeployedVerifier:
    """EZKL's verifiers of a split round's rule and chunk circuits and the adapter over both
    (contracts/src/EzklSplitRoundVerifier.sol); `halo2` is the rule circuit's. Deployed on their
    own: the factory does not deploy this adapter yet, so no market can name it."""
    halo2, first = chain.deploy_artifact(account, verifier_artifact(rule))
    chunk_halo2, second = chain.deploy_artifact(account, verifier_artifact(chunk))
    adapter, third = chain.deploy(
        account, "EzklSplitRoundVerifier", halo2.address, chunk_halo2.address, trainers, chunks
    )
    return DeployedVerifier(halo2.address, adapter.address, first.gas_used + second.gas_used + third.gas_used)


def split_round_verdict(
    chain: Chain, account: LocalAccount, adapter: str, proof: bytes, instances: list[int]
) -> tuple[bool, int | None]:
    """Whether the split round adapter at `adapter` accepts `proof` for a market's instances, and
    the gas of a transaction that has it check them (None where it refuses). The adapter answers
    false without reverting, so that gas is measured with a block's limit, not estimated."""
    fn = chain.contract("EzklSplitRoundVerifier", adapter).functions.verifyProof(proof, instances)
    if not chain.call(fn):
        return False, None
    return True, chain.transact(account, fn, gas=chain.gas_limit()).gas_used


def deployed_verifier_code(chain: Chain, adapter: str) -> bytes:
    """The runtime code of the Halo2 verifier behind a market's verifier adapter (its `halo2()`),
    for verifier.check_verifier on the machine that proves."""
    abi = load_artifact(chain.artifacts_dir, "EzklRoundVerifier")["abi"]  # halo2() is the adapters' shared base
    halo2 = chain.call(chain.contract_at(abi, adapter).functions.halo2())
    return chain.code(halo2)
