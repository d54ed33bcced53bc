"""Commitments recorded on chain for each update, model and the owner's data.

A commitment binds the *plaintext* (an update before sealing, the owner's data), while the CID
binds the stored bytes (the ciphertext). The contract accepts only elements of the BN254 scalar
field, the field EZKL's proof instances live in.

Models (updates, global models, aggregates) in a market whose rounds are proven are committed
with the Poseidon hash EZKL uses for hashed circuit inputs, over the values on the 2^-8 grid
(fedmarket/fixed_point.py), so the commitment is the proof's own public instance. Elsewhere,
and for the owner's data, a commitment is sha2-256 of the canonical serialisation reduced into the
field: Poseidon over a large model takes seconds, a cost only a proven market needs.
"""

from __future__ import annotations

import hashlib

import numpy as np

from fedmarket.field import BN254_FIELD, to_bytes32
from fedmarket.zk import poseidon_commitment


def commit(data: bytes) -> str:
    return to_bytes32(int.from_bytes(hashlib.sha256(data).digest(), "big") % BN254_FIELD)


def commit_model(vector: np.ndarray, plaintext: bytes, *, proven: bool) -> str:
    """The commitment to a model whose encoding is `plaintext`: Poseidon over its grid values in a
    proven market (a vector off the grid raises ZKError), else sha2-256 of the bytes."""
    return poseidon_commitment(vector) if proven else commit(plaintext)
