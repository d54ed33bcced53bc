"""Verifiers on chain, once per circuit, chain and factory: EZKL's generated Halo2Verifier, and
the adapter that lays a market's instances out as the circuit's (contracts/src/EzklRoundVerifier.sol,
EzklKzgRoundVerifier.sol for a round circuit whose inputs are under KZG commitments,
EzklSplitRoundVerifier.sol over a split round's two verifiers), deployed by the market factory's
VerifierFactory, which records it: a market may name only that factory's adapters.

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
    factory: FactoryClient, account: LocalAccount, builds: list[CircuitBuild], kind: str, *shape: int
) -> DeployedVerifier:
    """EZKL's verifier of each build, then the adapter over them (recorded in the first build's
    directory); `halo2` is the first build's."""
    chain = factory.chain
    record = builds[0].dir / f"deployed-{chain.chain_id}-{factory.address}-{kind}-{'-'.join(map(str, shape))}.json"
    if record.is_file():
        known = DeployedVerifier(**json.loads(record.read_text()))
        if chain.has_code(known.halo2) and chain.has_code(known.adapter):
            return known
    halo2s, gas = [], 0
    for build in builds:
        halo2, deployed = chain.deploy_artifact(account, verifier_artifact(build))
        halo2s.append(halo2.address)
        gas += deployed.gas_used
    if kind == "round":
        adapter, last = factory.deploy_round_verifier(
            account, halo2s[0], *shape, kzg=builds[0].commitment == "polycommit"
        )
    elif kind == "split-round":
        adapter, last = factory.deploy_split_round_verifier(account, *halo2s, *shape)
    else:
        adapter, last = factory.deploy_settlement_verifier(account, halo2s[0], *shape)
    deployed = DeployedVerifier(halo2s[0], adapter, gas + last.gas_used)
    record.write_text(json.dumps(deployed.__dict__))
    return deployed


def deploy_round_verifier(
    factory: FactoryClient, account: LocalAccount, build: CircuitBuild, trainers: int
) -> DeployedVerifier:
    return _deploy(factory, account, [build], "round", trainers)


def deploy_settlement_verifier(
    factory: FactoryClient, account: LocalAccount, build: CircuitBuild, trainers: int, samples: int, parts: int = 1
) -> DeployedVerifier:
    """`build` scores `samples` test rows; a round's test rows are proven in `parts` such proofs."""
    return _deploy(factory, account, [build], "settlement", trainers, samples, parts)


def deploy_split_round_verifier(
    factory: FactoryClient, account: LocalAccount, rule: CircuitBuild, chunk: CircuitBuild, trainers: int, chunks: int
) -> DeployedVerifier:
    """EZKL's verifiers of a split round's rule and chunk circuits and the adapter over both
    (contracts/src/EzklSplitRoundVerifier.sol); `halo2` is the rule circuit's."""
    return _deploy(factory, account, [rule, chunk], "split-round", trainers, chunks)


def deployed_verifier_code(chain: Chain, adapter: str) -> bytes:
    """The runtime code of the Halo2 verifier behind a market's verifier adapter (its `halo2()`),
    for verifier.check_verifier on the machine that proves."""
    abi = load_artifact(chain.artifacts_dir, "EzklRoundVerifier")["abi"]  # halo2() is the adapters' shared base
    halo2 = chain.call(chain.contract_at(abi, adapter).functions.halo2())
    return chain.code(halo2)


def deployed_round_verifier_code(chain: Chain, adapter: str, *, split: bool) -> list[bytes]:
    """The runtime code of each Halo2 verifier behind a round adapter: its `halo2()`, and for a
    `split` round's adapter its `chunkHalo2()` after it."""
    codes = [deployed_verifier_code(chain, adapter)]
    if split:
        chunk = chain.call(chain.contract("EzklSplitRoundVerifier", adapter).functions.chunkHalo2())
        codes.append(chain.code(chunk))
    return codes
