"""Sealing trainers' updates to the aggregator: X25519 + HKDF-SHA256 + ChaCha20-Poly1305.

The paper has the aggregator open each local model with a Diffie-Hellman secret of the trainer's
public key and its own private key (sources/004, section IV.B). fedmarket keeps that static-static
secret, which authenticates the trainer whose key is registered on chain, and adds an ephemeral
one so that a leaked trainer key does not open past updates (the pattern of HPKE's Auth mode,
RFC 9180). The associated data binds chain id, market address, round and trainer address: a
ciphertext moved to another round or market, or claimed by another trainer, does not open.

Envelope: version (1 byte) || ephemeral public key (32) || nonce (12) || AEAD ciphertext.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedmarket.errors import CryptoError, DecryptionError

VERSION = 1
_INFO = b"fedmarket/update/v1"
_HEADER = 1 + 32 + 12


@dataclass(frozen=True)
class SealContext:
    """Where a sealed update belongs. Every field is bound into the ciphertext."""

    chain_id: int
    market: str  # 0x-prefixed contract address
    round: int
    trainer: str  # 0x-prefixed trainer address

    def associated_data(self) -> bytes:
        return _INFO + struct.pack(">QI", self.chain_id, self.round) + _address(self.market) + _address(self.trainer)

    def describe(self) -> str:
        return f"market {self.market} round {self.round} trainer {self.trainer} on chain {self.chain_id}"


def generate_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def private_key_from_bytes(raw: bytes) -> X25519PrivateKey:
    if len(raw) != 32:
        raise CryptoError(f"an X25519 private key has 32 bytes, got {len(raw)}")
    return X25519PrivateKey.from_private_bytes(raw)


def private_key_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def public_key_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_bytes(raw: bytes) -> X25519PublicKey:
    if len(raw) != 32:
        raise CryptoError(f"an X25519 public key has 32 bytes, got {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def seal(plaintext: bytes, *, sender: X25519PrivateKey, recipient: bytes, context: SealContext) -> bytes:
    """Encrypt `plaintext` from `sender` (the trainer's static key) to `recipient` (the
    aggregator's public key) for `context`."""
    recipient_key = public_key_from_bytes(recipient)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = public_key_bytes(ephemeral)
    key = _derive(
        ephemeral.exchange(recipient_key) + sender.exchange(recipient_key),
        ephemeral_public,
        public_key_bytes(sender),
        recipient,
        context,
    )
    nonce = os.urandom(12)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, plaintext, context.associated_data())
    return bytes([VERSION]) + ephemeral_public + nonce + ciphertext


def open_sealed(envelope: bytes, *, recipient: X25519PrivateKey, sender: bytes, context: SealContext) -> bytes:
    """Decrypt an envelope sealed by the trainer whose public key is `sender`, or raise
    DecryptionError naming the context it failed for."""
    if len(envelope) < _HEADER + 16 or envelope[0] != VERSION:
        raise DecryptionError(f"not a fedmarket v{VERSION} envelope ({len(envelope)} bytes) for {context.describe()}")
    ephemeral_public, nonce, ciphertext = envelope[1:33], envelope[33:45], envelope[45:]
    try:
        ephemeral_key = public_key_from_bytes(ephemeral_public)
        sender_key = public_key_from_bytes(sender)
        key = _derive(
            recipient.exchange(ephemeral_key) + recipient.exchange(sender_key),
            ephemeral_public,
            sender,
            public_key_bytes(recipient),
            context,
        )
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, context.associated_data())
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError(
            f"ciphertext does not open for {context.describe()}: wrong key, sealed for another "
            "market, round or trainer, or tampered"
        ) from exc


def _derive(shared: bytes, ephemeral: bytes, sender: bytes, recipient: bytes, context: SealContext) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral + sender + recipient, info=context.associated_data()
    )
    return hkdf.derive(shared)


def _address(value: str) -> bytes:
    raw = bytes.fromhex(value[2:] if value.startswith("0x") else value)
    if len(raw) != 20:
        raise CryptoError(f"not an address: {value}")
    return raw
