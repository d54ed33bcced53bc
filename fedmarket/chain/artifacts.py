"""Compiled contract artifacts (ABI + bytecode) written by `contracts/compile.js`."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from eth_utils import function_signature_to_4byte_selector

from fedmarket.errors import ArtifactError


@cache
def load_artifact(artifacts_dir: Path, name: str) -> dict:
    path = Path(artifacts_dir) / f"{name}.json"
    try:
        artifact = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"no artifact {path}: run `make contracts`") from None
    if not artifact.get("abi") or not artifact.get("bytecode", "0x")[2:]:
        raise ArtifactError(f"artifact {path} has no ABI or bytecode")
    return artifact


def error_abis(artifacts_dir: Path, names: tuple[str, ...]) -> dict[bytes, dict]:
    """Custom errors of the named contracts, by 4-byte selector."""
    by_selector: dict[bytes, dict] = {}
    for name in names:
        for entry in load_artifact(artifacts_dir, name)["abi"]:
            if entry["type"] == "error":
                types = ",".join(_abi_type(i) for i in entry["inputs"])
                by_selector[function_signature_to_4byte_selector(f"{entry['name']}({types})")] = entry
    return by_selector


def _abi_type(param: dict) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return param["type"]
