"""KZG commitments to circuit inputs (`input_visibility="polycommit"`), as EZKL makes them: the
points a proof carries, the same points computed from known values or field elements, their
linear combinations, and the market commitment to a point.

EZKL lays an input out in the Lagrange basis over the circuit's domain and fills the rows halo2
keeps unusable with 1 (`PolyCommitChip::commit`, `Blind::default()`), so a commitment is affine
in the values: C(a) + C(b) = C(a + b) + C(0). A proof's transcript (EVM encoding) opens with one
uncompressed point (x, y big-endian, 64 bytes) per input, in input order.
"""

from __future__ import annotations

import json

import ezkl
import numpy as np
from eth_utils import keccak
from py_ecc.optimized_bn128 import FQ, Z1, add, eq, is_on_curve, multiply, neg
from py_ecc.optimized_bn128 import b as CURVE_B

from fedmarket.errors import ZKError
from fedmarket.field import BN254_FIELD, to_bytes32
from fedmarket.zk.ezkl.poseidon import felts
from fedmarket.zk.ezkl.toolchain import CircuitBuild, call_ezkl

POINT_BYTES = 64


def commit_values(build: CircuitBuild, values: np.ndarray) -> bytes:
    """The commitment EZKL's proof carries for an input of these grid values (one column)."""
    return _commit(build, felts(values))


def commit_elements(build: CircuitBuild, elements) -> bytes:
    """The commitment to an input of these field elements (integers, reduced): a model masked in
    BN254's field, or a mask stream."""
    return _commit(build, [(int(e) % BN254_FIELD).to_bytes(32, "little").hex() for e in elements])


def _commit(build: CircuitBuild, message: list[str]) -> bytes:
    points = call_ezkl(
        "kzg_commit", ezkl.kzg_commit, message, str(build.vk), str(build.settings_path), str(build.srs_path)
    )
    if len(points) != 1:
        raise ZKError(f"{len(message)} values span {len(points)} columns of circuit {build.name}")
    return _encode(points[0])


def proof_commitments(proof_json: str, count: int) -> list[bytes]:
    """The first `count` input commitments a proof file carries."""
    try:
        raw = bytes.fromhex(json.loads(proof_json)["hex_proof"].removeprefix("0x"))
    except (ValueError, KeyError, TypeError) as exc:
        raise ZKError(f"not an EZKL proof file: {exc}") from None
    if len(raw) < count * POINT_BYTES:
        raise ZKError("the proof is too short to carry its input commitments")
    return [raw[i * POINT_BYTES : (i + 1) * POINT_BYTES] for i in range(count)]


def point_commitment(point: bytes) -> str:
    """The market commitment to an input point: keccak256(x, y) mod FIELD, as the KZG round
    adapter computes it from the proof (contracts/src/EzklKzgRoundVerifier.sol)."""
    if len(point) != POINT_BYTES:
        raise ZKError(f"a point is {POINT_BYTES} bytes, not {len(point)}")
    return to_bytes32(int.from_bytes(keccak(point), "big") % BN254_FIELD)


def combines_to(total: bytes, terms: list[tuple[int, bytes]], zero: bytes) -> bool:
    """Whether the values under `total` are sum(c x values under point) over `terms` (c, point),
    in the field: C(v) - C(0) is linear in v, `zero` being C(0), the commitment to zeros."""
    minus_zero = neg(_decode(zero))
    right = Z1
    for c, point in terms:
        part = multiply(add(_decode(point), minus_zero), abs(c))
        right = add(right, part if c >= 0 else neg(part))
    return eq(add(_decode(total), minus_zero), right)


def _encode(point) -> bytes:
    """PyG1Affine (little-endian hex coordinates) as the proof's 64 big-endian bytes."""
    x, y = (int.from_bytes(bytes.fromhex(v.removeprefix("0x")), "little") for v in (point.x, point.y))
    return x.to_bytes(32, "big") + y.to_bytes(32, "big")


def _decode(raw: bytes):
    x, y = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    point = (FQ(x), FQ(y), FQ(1))
    if not is_on_curve(point, CURVE_B):
        raise ZKError("a commitment is not a point of BN254's G1")
    return point
