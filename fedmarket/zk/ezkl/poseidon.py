"""Commitments as EZKL makes them for hashed circuit inputs (`input_visibility="hashed"`):
`ezkl.poseidon_hash` over `ezkl.float_to_felt(x, FRAC_BITS)`, so the value a trainer commits to is
exactly the public instance the circuit exposes for its input."""

from __future__ import annotations

import ezkl
import numpy as np

from fedmarket.errors import ZKError
from fedmarket.field import to_bytes32
from fedmarket.fixed_point import FRAC_BITS, on_grid
from fedmarket.packing import pack_pairs


def felts(values: np.ndarray) -> list[str]:
    """EZKL field elements (little-endian hex) of grid values, in row-major order."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    return [ezkl.float_to_felt(float(x), FRAC_BITS, ezkl.PyInputType.F64) for x in flat]


def felt_to_int(felt: str) -> int:
    """Field element (EZKL's little-endian hex) as an integer in [0, FIELD)."""
    return int.from_bytes(bytes.fromhex(felt.removeprefix("0x")), "little")


def packed_commitment(values: np.ndarray) -> str:
    """The commitment to a global model under a hashed build: the Poseidon hash of its values packed
    two per element (fedmarket/packing.py), as the round and settlement circuits hash it."""
    return poseidon_commitment(pack_pairs(values))


def poseidon_commitment(values: np.ndarray) -> str:
    """The commitment to a tensor of grid values: EZKL's Poseidon hash of its field elements,
    as a 0x-prefixed big-endian bytes32 (the contract's slot)."""
    values = np.asarray(values, dtype=np.float64)
    if not on_grid(values):
        raise ZKError("commitments are to values on the 2^-8 grid: quantize() first")
    (digest,) = ezkl.poseidon_hash(felts(values))
    return to_bytes32(felt_to_int(digest))
