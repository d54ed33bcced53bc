"""Two grid values per field element, for a global model (the initial model, each aggregate)
hashed by a circuit: EZKL's Poseidon hashes one element per permutation, so a model hashed in
pairs costs half the hashing rows.

A pair (a, b) of grid values, as integers of grid steps A, B with |A|, |B| < 2^18 (the provable
range, fixed_point.MAX_ABS), is the element P = (A + 2^18) + 2^20 B. The circuit takes P and
unpacks it: B = round(P / 2^20), as EZKL rounds a product it brings back to its working scale
(a range-checked division: |P - 2^20 B| < 2^20), and A + 2^18 = P - 2^20 B, which the circuit
requires to be >= 0. The range check alone admits B + 1 as well; that choice leaves
P - 2^20 (B + 1) < 0, so with the check exactly one pair unpacks from each P. The check is
|x| - x = 0 for x = A + 2^18 rather than a comparison: an absolute value costs EZKL one
decomposition, a comparison a decomposition and two zero tests.

Updates stay one value per element: unpacking costs the circuit about as many rows as hashing the
second value saves, and only the global models need the room.
"""

from __future__ import annotations

import numpy as np
import torch

from fedmarket.errors import ZKError
from fedmarket.fixed_point import FRAC_BITS, MAX_ABS_BITS, STEP, check_provable, on_grid

PAIR_BITS = 20  # the second value's place, in grid steps
OFFSET = 1 << (MAX_ABS_BITS + FRAC_BITS)  # 2^18 steps: the first value moved to [0, 2^19)


def packed_size(dim: int) -> int:
    return (dim + 1) // 2


def pack_pairs(values: np.ndarray) -> np.ndarray:
    """The packed elements of grid values (an odd count ends with a 0), as circuit input values:
    P x 2^-8, exact in float64 (|P| < 2^39); the circuit reads P at scale 8."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if not on_grid(values):
        raise ZKError("only values on the 2^-8 grid pack: quantize() first")
    check_provable(values)
    steps = np.rint(values / STEP).astype(np.int64)
    if steps.size % 2:
        steps = np.append(steps, 0)
    packed = steps[0::2] + OFFSET + (steps[1::2] << PAIR_BITS)
    return packed.astype(np.float64) * STEP


def unpack_pairs(packed: torch.Tensor, dim: int, one: torch.Tensor, rebase_scale: int = FRAC_BITS):
    """(values [1, dim], short [1, packed_size(dim)]) from packed elements [1, packed_size(dim)];
    short is 0 where the first value's offset form x is >= 0 (the check that makes the unpacking
    unique) and |x| - x > 0 where it is not: a circuit requires their sum to be 0.

    `one`: a circuit value equal to 1 at scale 0, whose product forces EZKL's rounding rebase to
    `rebase_scale` (the circuit's input scale times its scale_rebase_multiplier); a division by a
    power of two alone only moves the scale. Run in float (not exported), the rounding is explicit."""
    if torch.onnx.is_in_onnx_export():
        quotient = (packed / float(1 << (PAIR_BITS - FRAC_BITS + rebase_scale))) * one  # rebased to rebase_scale
        if rebase_scale != FRAC_BITS:
            quotient = quotient * float(1 << (rebase_scale - FRAC_BITS))
    else:
        quotient = torch.round(packed / float(1 << (PAIR_BITS - FRAC_BITS))) * STEP
    first = packed - quotient * float(1 << PAIR_BITS)
    short = first.abs() - first
    values = torch.stack([first - OFFSET * STEP, quotient], dim=-1).reshape(packed.shape[0], -1)[:, :dim]
    return values, short


def always_one(value: torch.Tensor) -> torch.Tensor:
    """1 at scale 0 whatever `value` holds ([1, 1] from a [1, 1] circuit value): exactly one of
    the two comparisons holds, so a prover cannot make it 0."""
    return (value > 0.5).to(value.dtype) + (value <= 0.5).to(value.dtype)
