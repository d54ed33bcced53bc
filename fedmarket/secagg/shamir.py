"""Threshold sharing of 16-byte seeds among holders named by registration index.

pycryptodome's `Shamir` shares 16-byte secrets over GF(2^128) at points 1..n; holder i gets
point i + 1. Seeds are 16 bytes on purpose (fedmarket/secagg/protocol.py), so no secret is cut.
"""

from __future__ import annotations

from Crypto.Protocol.SecretSharing import Shamir

from fedmarket.errors import NotEnoughSharesError

SEED_BYTES = 16


def split(secret: bytes, threshold: int, holders: tuple[int, ...]) -> dict[int, bytes]:
    """One share of `secret` per holder; any `threshold` of them rebuild it."""
    shares = dict(Shamir.split(threshold, max(holders) + 1, secret))
    return {h: shares[h + 1] for h in holders}


def combine(shares: dict[int, bytes], threshold: int) -> bytes:
    """The secret from `threshold` shares (holder -> share); more are ignored."""
    if len(shares) < threshold:
        raise NotEnoughSharesError(f"{len(shares)} valid shares, {threshold} needed")
    chosen = sorted(shares.items())[:threshold]
    return Shamir.combine([(h + 1, share) for h, share in chosen])
