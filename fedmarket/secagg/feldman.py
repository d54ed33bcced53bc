"""Feldman's verifiable secret sharing (Feldman, "A practical scheme for non-interactive verifiable
secret sharing", FOCS 1987) over the group of secp256k1, through libsecp256k1 (`coincurve`).

A dealer shares a scalar s with a secret polynomial f of degree threshold - 1, f(0) = s; holder i
gets f(i + 1) and everyone gets the commitments C_k = a_k G to f's coefficients. Anyone checks a
share y of holder i with y G = sum_k (i + 1)^k C_k, so every share that passes lies on the one
polynomial the commitments fix: any `threshold` of them rebuild s, and a dealer cannot hand out
shares that rebuild different secrets. C_0 = s G reveals s only up to a discrete logarithm, so the
secrets dealt are full-size scalars, never short seeds.

Why not Shamir over GF(2^128) (pycryptodome's): no group there fits a commitment. Why secp256k1
rather than BN254 (py_ecc, pinned for EZKL's KZG points): libsecp256k1 is compiled and py_ecc is
pure Python, and a holder checks `threshold` scalar multiplications per share.
"""

from __future__ import annotations

import hashlib
import itertools
import struct

from coincurve import PublicKey

from fedmarket.errors import NotEnoughSharesError

ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # secp256k1's group order
SCALAR_BYTES = 32


def scalar_bytes(value: int) -> bytes:
    return value.to_bytes(SCALAR_BYTES, "big")


def scalar(raw: bytes) -> int:
    """A scalar from 32 bytes, reduced into [1, ORDER - 1] (a uniform 256-bit input is biased by
    under 2^-127)."""
    return int.from_bytes(raw, "big") % (ORDER - 1) + 1


def _times_g(value: int) -> PublicKey:
    return PublicKey.from_secret(scalar_bytes(value))


def commitment(value: int) -> bytes:
    """value G, compressed."""
    return _times_g(value).format()


def deal(
    secret: int, threshold: int, holders: tuple[int, ...], randomness: bytes
) -> tuple[dict[int, int], tuple[bytes, ...]]:
    """One share of `secret` per holder (holder i at point i + 1) and the commitments to the
    polynomial, C_0 = secret G first (compressed points). The other coefficients derive from
    `randomness` (secret, uniform), so a dealer can deal the same shares again."""
    if not 0 < secret < ORDER:
        raise ValueError("the secret must be a non-zero scalar")
    for attempt in itertools.count():
        coefficients = [secret] + [
            scalar(hashlib.sha256(randomness + struct.pack(">II", attempt, k)).digest()) for k in range(1, threshold)
        ]
        shares = {h: _evaluate(coefficients, h + 1) for h in holders}
        if all(shares.values()):  # a zero share has no commitment check (odds 2^-256): draw again
            return shares, tuple(commitment(a) for a in coefficients)
    raise AssertionError("unreachable")


def _evaluate(coefficients: list[int], x: int) -> int:
    value = 0
    for a in reversed(coefficients):
        value = (value * x + a) % ORDER
    return value


def is_point(raw: bytes) -> bool:
    try:
        PublicKey(raw)
    except ValueError:
        return False
    return True


def verify(share: int, holder: int, commitments: tuple[bytes, ...]) -> bool:
    """Whether `share` is holder `holder`'s point of the polynomial the commitments fix; a
    malformed point or share is simply not valid."""
    if not 0 < share < ORDER:
        return False
    x = holder + 1
    try:
        points = [PublicKey(c) for c in commitments]
        terms = [points[0]] + [p.multiply(scalar_bytes(pow(x, k, ORDER))) for k, p in enumerate(points) if k]
        expected = PublicKey.combine_keys(terms) if len(terms) > 1 else terms[0]
    except ValueError:  # not a curve point, or a sum at infinity that no honest share can match
        return False
    return expected.format() == commitment(share)


def combine(shares: dict[int, int], threshold: int) -> int:
    """The secret from `threshold` shares (holder -> share) by Lagrange interpolation at 0; more are
    ignored. The caller verifies the shares: unverified ones rebuild garbage."""
    if len(shares) < threshold:
        raise NotEnoughSharesError(f"{len(shares)} valid shares, {threshold} needed")
    chosen = sorted(shares.items())[:threshold]
    secret = 0
    for h, y in chosen:
        weight = 1
        for j, _ in chosen:
            if j != h:
                weight = weight * (j + 1) * pow(j - h, -1, ORDER) % ORDER
        secret = (secret + y * weight) % ORDER
    return secret
