"""Commitments recorded on chain next to each CID.

A commitment binds the *plaintext* (an update before sealing, the owner's data), while the CID
binds the stored bytes (the ciphertext). This version commits with sha2-256 of the canonical
serialisation; the ZK issue replaces it by the Poseidon hash EZKL uses for hashed circuit inputs,
keeping the 32-byte slot and every call site.
"""

from __future__ import annotations

import hashlib


def commit(data: bytes) -> str:
    return "0x" + hashlib.sha256(data).hexdigest()
