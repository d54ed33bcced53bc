"""The BN254 scalar field: every public value a proof exposes, and every commitment the contract
stores, is an element of it. A leaf: imports nothing of fedmarket's."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

BN254_FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617


def signed(value: int) -> int:
    """A field element read as a signed integer (negatives are FIELD - |x|)."""
    return value - BN254_FIELD if value > BN254_FIELD // 2 else value


def to_bytes32(value: int) -> str:
    """The element as the contract's bytes32: 0x-prefixed, big-endian."""
    return "0x" + (value % BN254_FIELD).to_bytes(32, "big").hex()


def list_commitment(values: list[int]) -> str:
    """keccak256(abi.encode(uint256[] values)) mod FIELD as bytes32: the contracts' commitment to a
    list of hashes (the owner's data chunks, a model's chunks in a round proven by chunks)."""
    return to_bytes32(int.from_bytes(keccak(encode(["uint256[]"], [list(values)])), "big"))
