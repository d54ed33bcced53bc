"""Fixed point shared by the circuits, the commitments and the float code that mirrors them.

Every model, update and test sample that enters a proof is a multiple of 2^-FRAC_BITS. Trainers
round their models onto this grid before sealing them, the aggregator rounds the aggregate, and
the owner rounds the test subset, so the bytes in the content store, the commitments on chain and
the circuit's inputs are the same numbers. 8 fractional bits is the issue's floor; the LR and MLP
on digits lose no accuracy at that step (README, "What is real, and what is not yet").

Commitments are EZKL's own Poseidon hash of hashed circuit inputs (`input_visibility="hashed"`):
`ezkl.poseidon_hash` over `ezkl.float_to_felt(x, FRAC_BITS)`, so the value a trainer commits to is
exactly the public instance the circuit exposes for its input.
"""

from __future__ import annotations

import ezkl
import numpy as np

from fedmarket.commitments import BN254_FIELD
from fedmarket.errors import ZKError

FRAC_BITS = 8
STEP = 2.0**-FRAC_BITS
# Inputs beyond this magnitude would overflow the circuits' range checks on the squared statistics
# (RunArgs.decomp_legs legs of 2^14): a model entry of 2^10 is already far outside training.
MAX_ABS_BITS = 10
MAX_ABS = 2.0**MAX_ABS_BITS


def quantize(values: np.ndarray) -> np.ndarray:
    """Round onto the 2^-8 grid, half away from zero (as EZKL's own quantisation), as float64."""
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ZKError("cannot quantise non-finite values")
    if values.size and float(np.abs(values).max()) >= MAX_ABS:
        raise ZKError(
            f"value {float(np.abs(values).max()):.4g} is outside the provable range +-2^{MAX_ABS_BITS}"
        )
    return _round(values)


def _round(values: np.ndarray) -> np.ndarray:
    scaled = values * (1 << FRAC_BITS)
    return np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) * STEP


def on_grid(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=np.float64)
    return bool(np.all(np.isfinite(values)) and np.array_equal(values, _round(values)))


def felts(values: np.ndarray) -> list[str]:
    """EZKL field elements (little-endian hex) of grid values, in row-major order."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    return [ezkl.float_to_felt(float(x), FRAC_BITS, ezkl.PyInputType.F64) for x in flat]


def felt_to_int(felt: str) -> int:
    """Field element (EZKL's little-endian hex) as an integer in [0, FIELD)."""
    return int.from_bytes(bytes.fromhex(felt.removeprefix("0x")), "little")


def signed(value: int) -> int:
    """Field element read as a signed integer (negatives are FIELD - |x|)."""
    return value - BN254_FIELD if value > BN254_FIELD // 2 else value


def to_bytes32(value: int) -> str:
    return "0x" + (value % BN254_FIELD).to_bytes(32, "big").hex()


def poseidon_commitment(values: np.ndarray) -> str:
    """The commitment to a tensor of grid values: EZKL's Poseidon hash of its field elements,
    as a 0x-prefixed big-endian bytes32 (the contract's slot)."""
    values = np.asarray(values, dtype=np.float64)
    if not on_grid(values):
        raise ZKError("commitments are to values on the 2^-8 grid: quantize() first")
    (digest,) = ezkl.poseidon_hash(felts(values))
    return to_bytes32(felt_to_int(digest))


# A market's domain (keccak of chain, market and step) enters a circuit as DOMAIN_LIMBS limbs of
# LIMB_BITS bits of its low 144 bits: EZKL reads circuit inputs as float32, whose 24-bit mantissa
# holds a 24-bit limb exactly (a 40-bit limb came back rounded). The contract side
# (contracts/src/EzklCircuitVerifier.sol) splits `domain(step)` the same way. 144 bits leave a
# replay 2^144 work (a second preimage of the domain's low bits).
DOMAIN_LIMBS = 6
LIMB_BITS = 24


def domain_limbs(domain: int) -> np.ndarray:
    """The limbs as circuit input values (limb / 2^8, so the field element is the limb)."""
    mask = (1 << LIMB_BITS) - 1
    return np.array([((domain >> (LIMB_BITS * k)) & mask) * STEP for k in range(DOMAIN_LIMBS)])
