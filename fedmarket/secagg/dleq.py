"""A pair's shared mask point, revealed with proof (Chaum and Pedersen, "Wallet databases with
observers", CRYPTO 1992; non-interactive by Fiat and Shamir): trainer u with mask key a (A = a G
on secp256k1) publishes K = a B for its peer's mask key B and proves that log_G A = log_B K
without giving a away. Anyone then derives the pair's key k_uv from K (`masks.pair_key_from_point`)
and recomputes the pair's stream: a dispute over what a pair's stream commits to is settled by
either member, and only that pair's stream is disclosed.

Hand-written: no maintained Python package proves discrete-log equality on secp256k1; the curve
arithmetic is libsecp256k1's (`coincurve`), as in `feldman`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from coincurve import PublicKey

from fedmarket.errors import CryptoError
from fedmarket.secagg.feldman import ORDER, scalar_bytes

_TAG = b"fedmarket/secagg/dleq/v1"


@dataclass(frozen=True)
class PointReveal:
    """K = a B (compressed) and the proof (challenge c, response s) that A = a G for the same a."""

    point: bytes
    challenge: int
    response: int


def reveal_point(own: bytes, peer_public: bytes, context: bytes) -> PointReveal:
    """K for the pair of `own` (a 32-byte scalar) and `peer_public`, proven for `context` (the
    chain, market and round the pair's masks belong to, so the proof is accepted nowhere else)."""
    a = int.from_bytes(own, "big")
    if not 0 < a < ORDER:
        raise CryptoError("a mask key is not a scalar of secp256k1")
    try:
        peer = PublicKey(peer_public)
    except ValueError as exc:
        raise CryptoError(f"a peer's mask key is not a point: {exc}") from None
    point = peer.multiply(own).format()
    own_public = PublicKey.from_secret(own).format()
    r = secrets.randbelow(ORDER - 1) + 1
    commitments = PublicKey.from_secret(scalar_bytes(r)).format(), peer.multiply(scalar_bytes(r)).format()
    c = _challenge(context, own_public, peer_public, point, *commitments)
    return PointReveal(point, c, (r + c * a) % ORDER)


def verify_point(reveal: PointReveal, own_public: bytes, peer_public: bytes, context: bytes) -> bool:
    """Whether `reveal.point` is the pair's shared point, proven by the holder of `own_public`;
    anything malformed is simply not valid."""
    c, s = reveal.challenge, reveal.response
    if not (0 < c < ORDER and 0 < s < ORDER):
        return False
    try:
        a, b, k = PublicKey(own_public), PublicKey(peer_public), PublicKey(reveal.point)
        minus_c = scalar_bytes(ORDER - c)
        # s G - c A and s B - c K: the prover's commitments when log_G A = log_B K
        t1 = PublicKey.combine_keys([PublicKey.from_secret(scalar_bytes(s)), a.multiply(minus_c)])
        t2 = PublicKey.combine_keys([b.multiply(scalar_bytes(s)), k.multiply(minus_c)])
    except ValueError:  # not points, or a sum at infinity no honest proof gives
        return False
    return c == _challenge(context, a.format(), b.format(), k.format(), t1.format(), t2.format())


def _challenge(context: bytes, *points: bytes) -> int:
    digest = hashlib.sha256(_TAG + len(context).to_bytes(4, "big") + context + b"".join(points)).digest()
    return int.from_bytes(digest, "big") % ORDER
