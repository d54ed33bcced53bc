"""Commitments recorded on chain for each update, model and the owner's data.

A commitment binds the *plaintext* (an update before sealing, the owner's data), while the CID
binds the stored bytes (the ciphertext). The contract accepts only elements of the BN254 scalar
field, the field EZKL's proof instances live in. This version commits with sha2-256 of the
canonical serialisation reduced into that field; the ZK issue replaces it by the Poseidon hash
EZKL uses for hashed circuit inputs, keeping the 32-byte slot and every call site.
"""

from __future__ import annotations

import hashlib

BN254_FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617


def commit(data: bytes) -> str:
    value = int.from_bytes(hashlib.sha256(data).digest(), "big") % BN254_FIELD
    return "0x" + value.to_bytes(32, "big").hex()
