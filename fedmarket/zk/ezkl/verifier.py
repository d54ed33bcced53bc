"""The Solidity verifier EZKL generates for a circuit, compiled with our solcjs
(contracts/compile.js), and the adapter a market calls (contracts/src/EzklRoundVerifier.sol and
EzklSettlementVerifier.sol), which lays the market's instances out as the circuit's.

EZKL's per-circuit verifier is used, not its experimental reusable one: the reusable verifier of
EZKL 23.0.5 runs out of gas on every proof here (also through EZKL's own `verify_evm`), while the
per-circuit one verifies. With the Freivalds argument disabled (toolchain.RunArgs) it stays under
EIP-170's 24,576-byte code limit, so it deploys on any EVM chain.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import ezkl
from eth_abi import encode

from fedmarket.errors import VerifierMismatchError, ZKError
from fedmarket.settings import load_settings
from fedmarket.zk.ezkl.toolchain import CircuitBuild
from fedmarket_contracts import compile_script

EIP170_LIMIT = 24_576


def verifier_artifact(build: CircuitBuild) -> dict:
    """ABI and bytecode of the circuit's Halo2Verifier, generated and compiled once per build."""
    out = build.dir / "verifier"
    artifact = out / "artifacts" / "Halo2Verifier.json"
    if artifact.is_file():
        return json.loads(artifact.read_text())
    source = out / "src" / "Halo2Verifier.sol"
    source.parent.mkdir(parents=True, exist_ok=True)
    _generate(build, source)
    done = subprocess.run(
        ["node", str(compile_script()), "--src", str(source.parent), "--out", str(artifact.parent)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NODE_PATH": str(node_modules())},
    )
    if done.returncode != 0 or not artifact.is_file():
        raise ZKError(f"solcjs could not compile the generated verifier: {done.stderr.strip()[-2000:]}")
    compiled = json.loads(artifact.read_text())
    runtime = len(bytes.fromhex(compiled["deployedBytecode"].removeprefix("0x")))
    if runtime > EIP170_LIMIT:
        artifact.unlink()
        raise ZKError(
            f"the verifier of {build.name} is {runtime} bytes, over EIP-170's {EIP170_LIMIT}: "
            "build it with fewer columns (RunArgs.num_inner_cols)"
        )
    return compiled


def node_modules() -> Path:
    """Where npm `solc` is: FEDMARKET_NODE_MODULES_DIR, else beside the installed contracts (a
    checkout after `make setup`), else ./node_modules."""
    configured = load_settings().node_modules_dir
    candidates = (
        [configured] if configured else [compile_script().parent.parent / "node_modules", Path.cwd() / "node_modules"]
    )
    for candidate in candidates:
        if (Path(candidate) / "solc").is_dir():
            return Path(candidate)
    raise ZKError(
        f"npm solc not found in {', '.join(map(str, candidates))}: run `make setup` or set FEDMARKET_NODE_MODULES_DIR"
    )


def check_verifier(build: CircuitBuild, deployed_code: bytes) -> None:
    """Refuse to prove against a verifier that was not made from this build: `deployed_code`, the
    runtime code of the Halo2 verifier behind the market's adapter (deploy.deployed_verifier_code),
    must equal what this build compiles to. Builds are reproducible for one circuit and SRS
    (toolchain._fix_settings), so a difference means another SRS or circuit, found here and named
    instead of as a rejected proof on chain after minutes of proving."""
    expected = bytes.fromhex(verifier_artifact(build)["deployedBytecode"].removeprefix("0x"))
    if bytes(deployed_code) != expected:
        raise VerifierMismatchError(
            f"the market's verifier was not made from this machine's build of {build.name} ({build.dir}): "
            f"its proofs would be rejected. Build with the SRS the market's owner used (FEDMARKET_ZK_SRS_PATH; "
            f"this build's: {build.srs_path})"
        )


def _generate(build: CircuitBuild, source: Path) -> None:
    """EZKL writes the Solidity, then tries to download solc for the ABI and fails offline
    (DESIGN.md section 7): the source is what we need, so that failure is expected."""

    async def run() -> None:
        result = ezkl.create_evm_verifier(
            str(build.vk),
            str(build.settings_path),
            str(source),
            str(source.with_suffix(".abi")),
            str(build.srs_path),
            False,
        )
        if hasattr(result, "__await__"):
            await result

    try:
        asyncio.run(run())
    except Exception as exc:
        if not source.is_file() or "contract Halo2Verifier" not in source.read_text():
            raise ZKError(f"EZKL could not generate the verifier: {exc}") from exc


def market_proof(halo2_proof: bytes, free: list[int]) -> bytes:
    """The `proof` argument a market passes on to its verifier adapter:
    `abi.encode(bytes halo2Proof, uint256[] free)` (contracts/src/EzklCircuitVerifier.sol)."""
    return encode(["bytes", "uint256[]"], [halo2_proof, free])
