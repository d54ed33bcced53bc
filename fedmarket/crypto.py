"""Sealing trainers' updates to the aggregator: X25519 + HKDF-SHA256 + ChaCha20-Poly1305, with a
commitment to each envelope's key so that the key alone can serve as public evidence.

The paper has the aggregator open each local model with a Diffie-Hellman secret of the trainer's
public key and its own private key (sources/004, section IV.B). fedmarket seals each update with a
fresh ephemeral key instead (HPKE's base mode, RFC 9180), the trainer's registered key bound into
the key derivation; the chain authenticates who submitted. The associated data binds chain id,
market address, round and trainer address: a ciphertext moved to another round or market, or
claimed by another trainer, does not open.

Departure, for exclusions (contracts/README.md, "Exclusions"): the envelope's header carries
SHA-256 of its key, so the aggregator can publish the key of one submission it cannot use and
anyone can check that it is the key the trainer sealed with (the CID on chain fixes the header)
and that it does not open, or opens to an unusable update. ChaCha20-Poly1305 alone does not
commit to its key. The round and market are kept out of the key derivation (they stay in the
associated data), so a ciphertext replayed from another round has its committed key and provably
does not open here. The key derives from the ephemeral exchange alone, so that one ephemeral
secret would show whether a header matches; nothing keeps it yet.

Envelope: version (1 byte) || ephemeral public key (32) || nonce (12) || key commitment (32) ||
AEAD ciphertext.
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

from fedmarket.errors import CryptoError, DecryptionError, EnvelopeError, KeyMismatchError

VERSION = 2
_INFO = b"fedmarket/update/v2"
_KEY_COMMITMENT = b"fedmarket/key-commitment/v2"
_TAG = 16


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


@dataclass(frozen=True)
class Envelope:
    ephemeral: bytes  # X25519 public key, 32 bytes
    nonce: bytes  # 12 bytes
    key_commitment: bytes  # SHA-256 of the AEAD key, 32 bytes
    ciphertext: bytes  # AEAD output, tag included

    HEADER = 1 + 32 + 12 + 32

    @classmethod
    def parse(cls, raw: bytes) -> Envelope:
        if len(raw) < cls.HEADER + _TAG or raw[0] != VERSION:
            raise EnvelopeError(f"not a fedmarket v{VERSION} envelope ({len(raw)} bytes)")
        return cls(raw[1:33], raw[33:45], raw[45:77], raw[77:])

    def to_bytes(self) -> bytes:
        return bytes([VERSION]) + self.ephemeral + self.nonce + self.key_commitment + self.ciphertext


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


def key_commitment(key: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(_KEY_COMMITMENT + key)
    return digest.finalize()


def seal(plaintext: bytes, *, sender: X25519PrivateKey, recipient: bytes, context: SealContext) -> bytes:
    """Encrypt `plaintext` from `sender` (the trainer's registered key) to `recipient` (the
    aggregator's public key) for `context`."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = public_key_bytes(ephemeral)
    shared = ephemeral.exchange(public_key_from_bytes(recipient))
    key = _derive(shared, ephemeral_public, public_key_bytes(sender), recipient)
    nonce = os.urandom(12)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, plaintext, context.associated_data())
    return Envelope(ephemeral_public, nonce, key_commitment(key), ciphertext).to_bytes()


def submission_key(envelope: Envelope, *, recipient: X25519PrivateKey, sender: bytes) -> bytes:
    """The AEAD key of one envelope, as its recipient derives it (whether or not it matches the
    header's commitment: open_with_key checks that)."""
    try:
        shared = recipient.exchange(public_key_from_bytes(envelope.ephemeral))
    except ValueError as exc:  # a small-order point: every exchange with it gives zero
        raise EnvelopeError(f"the envelope's ephemeral key cannot be used: {exc}") from exc
    return _derive(shared, envelope.ephemeral, sender, public_key_bytes(recipient))


def open_with_key(envelope: Envelope, key: bytes, context: SealContext) -> bytes:
    """Decrypt with a given key, as an auditor does with a published one: KeyMismatchError when
    it is not the key the header commits to, DecryptionError when it does not open for
    `context`."""
    if len(key) != 32 or key_commitment(key) != envelope.key_commitment:
        raise KeyMismatchError(f"the key is not the one the envelope for {context.describe()} commits to")
    try:
        return ChaCha20Poly1305(key).decrypt(envelope.nonce, envelope.ciphertext, context.associated_data())
    except InvalidTag as exc:
        raise DecryptionError(
            f"ciphertext does not open for {context.describe()}: sealed for another market, round or "
            "trainer, or tampered"
        ) from exc


def _derive(shared: bytes, ephemeral: bytes, sender: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + sender + recipient, info=_INFO)
    return hkdf.derive(shared)


def _address(value: str) -> bytes:
    raw = bytes.fromhex(value[2:] if value.startswith("0x") else value)
    if len(raw) != 20:
        raise CryptoError(f"not an address: {value}")
    return raw
