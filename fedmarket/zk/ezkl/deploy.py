"""Verifiers on chain, once per circuit and chain: EZKL's generated Halo2Verifier plus the adapter
that lays a market's instances out as the circuit's (contracts/src/EzklRoundVerifier.sol).

A deployment is recorded in the build directory per chain id and reused while its code is still
on that chain (a restarted dev chain has none), so every market of the same shape references the
same verifier."""

from __future__ import annotations

import json
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from fedmarket.chain.adapter import Chain
from fedmarket.chain.artifacts import load_artifact
from fedmarket.zk.ezkl.toolchain import CircuitBuild
from fedmarket.zk.ezkl.verifier import verifier_artifact


@dataclass(frozen=True)
class DeployedVerifier:
    halo2: str  # EZKL's generated verifier
    adapter: str  # what a market's spec references
    deploy_gas: int


def deploy_verifier(chain: Chain, account: LocalAccount, build: CircuitBuild, adapter: str, *args) -> DeployedVerifier:
    """The adapter contract `adapter` (constructor: the Halo2Verifier, then `args`) for `build`."""
    record = build.dir / f"deployed-{chain.chain_id}-{adapter}-{'-'.join(map(str, args))}.json"
    if record.is_file():
        known = DeployedVerifier(**json.loads(record.read_text()))
        if chain.has_code(known.halo2) and chain.has_code(known.adapter):
            return known
    halo2, first = chain.deploy_artifact(account, verifier_artifact(build))
    contract, second = chain.deploy_artifact(account, load_artifact(chain.artifacts_dir, adapter), halo2.address, *args)
    deployed = DeployedVerifier(halo2.address, contract.address, first.gas_used + second.gas_used)
    record.write_text(json.dumps(deployed.__dict__))
    return deployed


def deploy_round_verifier(chain: Chain, account: LocalAccount, build: CircuitBuild, trainers: int) -> DeployedVerifier:
    return deploy_verifier(chain, account, build, "EzklRoundVerifier", trainers)


def deploy_settlement_verifier(
    chain: Chain, account: LocalAccount, build: CircuitBuild, trainers: int, samples: int
) -> DeployedVerifier:
    return deploy_verifier(chain, account, build, "EzklSettlementVerifier", trainers, samples)


def deployed_verifier_code(chain: Chain, adapter: str) -> bytes:
    """The runtime code of the Halo2 verifier behind a market's verifier adapter (its `halo2()`),
    for verifier.check_verifier on the machine that proves."""
    abi = load_artifact(chain.artifacts_dir, "EzklRoundVerifier")["abi"]  # halo2() is the adapters' shared base
    halo2 = chain.call(chain.contract_at(abi, adapter).functions.halo2())
    return chain.code(halo2)
