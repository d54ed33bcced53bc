"""Masks over the ring of fixed-point models: Z_2^64, or BN254's scalar field in a norm-bound
market.

A model enters the ring as its 2^-8 grid values (fedmarket/fixed_point.py, the grid the proofs and
commitments use) times 2^8. Trainer u sends y_u = x_u + PRG(b_u) + sum_v s(u, v) PRG(k_uv), with
s(u, v) = +1 when u < v and -1 otherwise, so the pairwise streams of two trainers who both send
cancel in the sum (Bonawitz et al. 2017, section 4). A stream is ChaCha20's keystream (`cryptography`),
keyed through HKDF-SHA256 bound to chain, market and round. The sum of at most 2^15 models within
the grid's range (+-2^10) cannot wrap in either ring.

Bonawitz et al. mask in Z_2^k (`Z64`, uint64 words). A norm-bound market masks in BN254's scalar
field (`BN254`): the field EZKL's KZG commitments are linear over, so that one trainer's masked
model can be checked against the model its norm proof commits to and the commitments to its
masks, C(y) - C(0) = (C(x) - C(0)) + (C(r) - C(0)) (fedmarket/zk/ezkl/polycommit.py), without
opening x. Its elements are stored as four little-endian uint64 words, and each is drawn from
40 bytes of keystream (bias under 2^-66).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from coincurve import PrivateKey, PublicKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedmarket.errors import CryptoError, MalformedUpdateError
from fedmarket.field import BN254_FIELD, signed
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


def decode_sum(total: np.ndarray, ring: Ring | None = None) -> np.ndarray:
    """A ring sum of encoded models back to floats (the sum, not the mean); Z_2^64 by default."""
    return (ring or Z64).integers(total).astype(np.float64) / (1 << FRAC_BITS)


def keystream(key: bytes, length: int) -> bytes:
    """`length` bytes of ChaCha20 keystream under a 32-byte key (zero nonce: one stream per key)."""
    return Cipher(algorithms.ChaCha20(key, b"\0" * 16), mode=None).encryptor().update(bytes(length))


def stream(key: bytes, size: int) -> np.ndarray:
    """`size` uint64 words of keystream."""
    return np.frombuffer(keystream(key, 8 * size), dtype="<u8").astype(np.uint64, copy=False)


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


class Ring:
    """Where a market's masked models live, and the default: Z_2^64, models as uint64 words
    (`encode_model`), streams by `stream`. `FieldRing` overrides each operation."""

    name = "z2^64"
    format = "fedmarket-masked-v1"  # the stored format's name, refused by the other ring

    def encode(self, model: np.ndarray) -> np.ndarray:
        return encode_model(model).view(np.uint64)

    def zeros(self, size: int) -> np.ndarray:
        return np.zeros(size, dtype=np.uint64)

    def stream(self, key: bytes, size: int) -> np.ndarray:
        return stream(key, size)

    def apply(self, values: np.ndarray, key: bytes, sign: int) -> None:
        apply(values, key, sign)

    def add(self, values: np.ndarray, other: np.ndarray) -> None:
        """values += other, in place."""
        values += other

    def to_words(self, values: np.ndarray) -> np.ndarray:
        return values

    def from_words(self, words: np.ndarray, size: int) -> np.ndarray:
        if words.dtype != np.uint64 or words.shape != (size,):
            raise MalformedUpdateError(f"a masked model has {size} uint64 words, got {words.dtype} {words.shape}")
        return words

    def integers(self, total: np.ndarray) -> np.ndarray:
        """A ring sum of encoded models as the integers it stands for (int64, scale 2^8)."""
        return total.view(np.int64)


class FieldRing(Ring):
    """BN254's scalar field: elements as Python ints in object arrays (a norm-bound model is small
    enough to be proven, so a few thousand elements)."""

    name = "bn254"
    format = "fedmarket-masked-bn254-v1"

    def encode(self, model: np.ndarray) -> np.ndarray:
        return np.array([int(v) % BN254_FIELD for v in encode_model(model)], dtype=object)

    def zeros(self, size: int) -> np.ndarray:
        return np.array([0] * size, dtype=object)

    def stream(self, key: bytes, size: int) -> np.ndarray:
        raw = keystream(key, 40 * size)
        return np.array(
            [int.from_bytes(raw[40 * i : 40 * i + 40], "little") % BN254_FIELD for i in range(size)], dtype=object
        )

    def apply(self, values: np.ndarray, key: bytes, sign: int) -> None:
        values += sign * self.stream(key, values.size)
        values %= BN254_FIELD

    def add(self, values: np.ndarray, other: np.ndarray) -> None:
        values += other
        values %= BN254_FIELD

    def to_words(self, values: np.ndarray) -> np.ndarray:
        raw = b"".join(int(x).to_bytes(32, "little") for x in values)
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64).reshape(-1, 4)

    def from_words(self, words: np.ndarray, size: int) -> np.ndarray:
        if words.dtype != np.uint64 or words.shape != (size, 4):
            raise MalformedUpdateError(
                f"a masked model has {size} field elements of 4 uint64 words, got {words.dtype} {words.shape}"
            )
        raw = words.astype("<u8").tobytes()
        values = [int.from_bytes(raw[32 * i : 32 * i + 32], "little") for i in range(size)]
        if any(v >= BN254_FIELD for v in values):
            raise MalformedUpdateError("a masked model has words that are not elements of BN254's scalar field")
        return np.array(values, dtype=object)

    def integers(self, total: np.ndarray) -> np.ndarray:
        return np.array([signed(int(x)) for x in total], dtype=np.int64)


Z64, BN254 = Ring(), FieldRing()


def ring_for(norm_bound: float | None) -> Ring:
    """The ring a market masks in: BN254's field when its trainers prove a norm bound."""
    return Z64 if norm_bound is None else BN254
