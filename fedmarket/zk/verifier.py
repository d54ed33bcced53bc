"""The Solidity verifier EZKL generates, compiled with our solcjs (contracts/compile.js), and the
circuit's verifying-key artifact (VKA). EZKL's reusable verifier is used: the per-circuit one of
even a tiny round circuit is 45 KB, over the EIP-170 limit of 24,576 bytes. Per circuit, an adapter
(contracts/src/EzklRoundAdapter.sol) stores and registers the VKA and fits the market's instance
layout to the circuit's; it is deployed once per circuit and referenced by the markets."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import ezkl

from fedmarket.errors import ZKError
from fedmarket.settings import REPO_ROOT
from fedmarket.zk.toolchain import CircuitBuild


def verifier_artifact(build: CircuitBuild) -> dict:
    """ABI and bytecode of the circuit's Halo2Verifier, generated and compiled once per build."""
    out = build.dir / "verifier"
    artifact = out / "artifacts" / "Halo2VerifierReusable.json"
    if artifact.is_file():
        return json.loads(artifact.read_text())
    source = out / "src" / "Halo2VerifierReusable.sol"
    source.parent.mkdir(parents=True, exist_ok=True)
    _generate(build, source)
    done = subprocess.run(
        ["node", str(REPO_ROOT / "contracts" / "compile.js"), "--src", str(source.parent), "--out", str(artifact.parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not artifact.is_file():
        raise ZKError(f"solcjs could not compile the generated verifier: {done.stderr.strip()[-2000:]}")
    return json.loads(artifact.read_text())


def _generate(build: CircuitBuild, source: Path) -> None:
    """EZKL writes the Solidity, then tries to download solc for the ABI and fails offline
    (DESIGN.md section 7): the source is what we need, so that failure is expected."""

    async def run() -> None:
        result = ezkl.create_evm_verifier(
            str(build.vk), str(build.settings_path), str(source), str(source.with_suffix(".abi")), str(build.srs_path), True
        )
        if hasattr(result, "__await__"):
            await result

    try:
        asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 - EZKL raises plain exceptions
        if not source.is_file() or "contract Halo2VerifierReusable" not in source.read_text():
            raise ZKError(f"EZKL could not generate the verifier: {exc}") from exc


def vka_words(build: CircuitBuild) -> list[bytes]:
    """The circuit's verifying-key artifact as the bytes32 words the adapter stores: EZKL writes
    a little-endian u64 word count, then the words."""
    path = build.dir / "vka.bytes"
    if not path.is_file():

        async def run() -> None:
            result = ezkl.create_evm_vka(str(build.vk), str(build.settings_path), str(path), str(build.srs_path))
            if hasattr(result, "__await__"):
                await result

        try:
            asyncio.run(run())
        except Exception as exc:  # noqa: BLE001
            raise ZKError(f"EZKL could not write the verifying-key artifact: {exc}") from exc
    raw = path.read_bytes()
    count = int.from_bytes(raw[:8], "little")
    if len(raw) != 8 + 32 * count:
        raise ZKError(f"unexpected VKA layout in {path}: {len(raw)} bytes for {count} words")
    return [raw[8 + 32 * i : 40 + 32 * i] for i in range(count)]
