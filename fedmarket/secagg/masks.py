"""Masks over the ring Z_2^64 of fixed-point models.

A model enters the ring as its 2^-8 grid values (fedmarket/fixed_point.py, the grid the proofs and
commitments use) times 2^8, as int64. Trainer u sends y_u = x_u + PRG(b_u) + sum_v s(u, v)
PRG(k_uv) mod 2^64, with s(u, v) = +1 when u < v and -1 otherwise, so the pairwise streams of
two trainers who both send cancel in the sum (Bonawitz et al. 2017, section 4). A stream is
ChaCha20's keystream read as little-endian uint64 (`cryptography`), keyed through HKDF-SHA256
bound to chain, market and round. The sum of at most 2^15 models within the grid's range
(+-2^10) cannot wrap.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from coincurve import PrivateKey, PublicKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedmarket.errors import CryptoError
from fedmarket.fixed_point import FRAC_BITS, quantize

_INFO = b"fedmarket/secagg/v1/"


@dataclass(frozen=True)
class MaskContext:
    """Where masks belong: every stream is bound to chain, market and round."""

    chain_id: int
    market: str  # 0x-prefixed contract address
    round: int

    def info(self, label: bytes) -> bytes:
        market = bytes.fromhex(self.market.removeprefix("0x").lower())
        return _INFO + label + b"/" + struct.pack(">QI", self.chain_id, self.round) + market


def hkdf(secret: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


def encode_model(model: np.ndarray) -> np.ndarray:
    """The model's grid values times 2^8 as int64 (ZKError off the grid's range or non-finite)."""
    return np.rint(quantize(np.asarray(model, dtype=np.float64)) * (1 << FRAC_BITS)).astype(np.int64)


def decode_sum(total: np.ndarray) -> np.ndarray:
    """A ring sum of encoded models back to floats (the sum, not the mean)."""
    return total.view(np.int64).astype(np.float64) / (1 << FRAC_BITS)


def stream(key: bytes, size: int) -> np.ndarray:
    """`size` uint64 words of ChaCha20 keystream under a 32-byte key (zero nonce: one stream per key)."""
    encryptor = Cipher(algorithms.ChaCha20(key, b"\0" * 16), mode=None).encryptor()
    return np.frombuffer(encryptor.update(bytes(8 * size)), dtype="<u8").astype(np.uint64, copy=False)


def pair_key(own: bytes, peer_public: bytes, context: MaskContext) -> bytes:
    """k_uv: the same for u and v, from their round mask keys (ECDH on secp256k1: `own` is a
    32-byte scalar, `peer_public` a compressed point)."""
    try:
        mine = PrivateKey(own)
        shared = PublicKey(peer_public).multiply(own).format()
    except ValueError as exc:  # not a scalar, or not a point on the curve
        raise CryptoError(f"a mask key cannot be used: {exc}") from exc
    return pair_key_from_point(shared, mine.public_key.format(), peer_public, context)


def pair_key_from_point(shared: bytes, one_public: bytes, other_public: bytes, context: MaskContext) -> bytes:
    """k_uv from the pair's shared ECDH point (compressed) and its two mask public keys, in either
    order: as each member derives it, or as anyone does from a revealed point (`dleq`)."""
    ends = sorted([one_public, other_public])
    return hkdf(shared, context.info(b"pair"), salt=ends[0] + ends[1])


def self_key(self_seed: bytes, context: MaskContext) -> bytes:
    return hkdf(self_seed, context.info(b"self"))


def apply(values: np.ndarray, key: bytes, sign: int) -> None:
    """values += sign * stream(key) mod 2^64, in place."""
    if sign > 0:
        values += stream(key, values.size)
    else:
        values -= stream(key, values.size)
