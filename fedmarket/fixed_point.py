"""The fixed-point grid shared by the circuits, the commitments and the float code they prove.

Every model, update and test sample that enters a proof is a multiple of 2^-FRAC_BITS. Trainers
round their models onto this grid before sealing them, the aggregator rounds the aggregate, and
the owner rounds the test subset, so the bytes in the content store, the commitments on chain and
the circuit's inputs are the same numbers. 8 fractional bits is the floor at which the LR and MLP
on digits lose no accuracy (README, "What is real, and what is not yet").
"""

from __future__ import annotations

import numpy as np

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
    check_provable(values)
    return _round(values)


def check_provable(values: np.ndarray) -> None:
    """ZKError unless every value is within the circuits' range, +-MAX_ABS."""
    values = np.asarray(values, dtype=np.float64)
    if values.size and float(np.abs(values).max()) >= MAX_ABS:
        raise ZKError(f"value {float(np.abs(values).max()):.4g} is outside the provable range +-2^{MAX_ABS_BITS}")


def _round(values: np.ndarray) -> np.ndarray:
    scaled = values * (1 << FRAC_BITS)
    return np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) * STEP


def on_grid(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=np.float64)
    return bool(np.all(np.isfinite(values)) and np.array_equal(values, _round(values)))


# A market's domain (keccak of chain, market and step) enters a circuit as DOMAIN_LIMBS limbs of
# LIMB_BITS bits of its low 144 bits: EZKL reads circuit inputs as float32, whose 24-bit mantissa
# holds a 24-bit limb exactly. The contract side (contracts/src/EzklCircuitVerifier.sol) splits
# `domain(step)` the same way. 144 bits leave a replay 2^144 work (a second preimage of the
# domain's low bits).
DOMAIN_LIMBS = 6
LIMB_BITS = 24


def domain_limbs(domain: int) -> np.ndarray:
    """The limbs as circuit input values (limb / 2^8, so the field element is the limb)."""
    mask = (1 << LIMB_BITS) - 1
    return np.array([((domain >> (LIMB_BITS * k)) & mask) * STEP for k in range(DOMAIN_LIMBS)])
