from __future__ import annotations

import dataclasses

import pytest

from fedmarket.crypto import SealContext, generate_private_key, open_sealed, public_key_bytes, seal
from fedmarket.errors import DecryptionError

CTX = SealContext(chain_id=1, market="0x" + "11" * 20, round=3, trainer="0x" + "22" * 20)


@pytest.fixture
def keys():
    return generate_private_key(), generate_private_key()  # aggregator, trainer


def sealed(keys, message=b"local model"):
    aggregator, trainer = keys
    return seal(message, sender=trainer, recipient=public_key_bytes(aggregator), context=CTX)


def open_with(keys, envelope, context=CTX):
    aggregator, trainer = keys
    return open_sealed(envelope, recipient=aggregator, sender=public_key_bytes(trainer), context=context)


def test_round_trip_and_fresh_ciphertexts(keys):
    a, b = sealed(keys), sealed(keys)
    assert a != b
    assert open_with(keys, a) == open_with(keys, b) == b"local model"


@pytest.mark.parametrize(
    "field,value",
    [("round", 4), ("market", "0x" + "33" * 20), ("trainer", "0x" + "44" * 20), ("chain_id", 2)],
)
def test_moved_ciphertext_does_not_open(keys, field, value):
    with pytest.raises(DecryptionError, match="does not open"):
        open_with(keys, sealed(keys), dataclasses.replace(CTX, **{field: value}))


def test_tampered_or_truncated_ciphertext_does_not_open(keys):
    envelope = bytearray(sealed(keys))
    envelope[-1] ^= 1
    with pytest.raises(DecryptionError):
        open_with(keys, bytes(envelope))
    with pytest.raises(DecryptionError, match="not a fedmarket"):
        open_with(keys, bytes(envelope[:20]))


def test_only_the_registered_trainer_key_opens(keys):
    aggregator, _ = keys
    impostor = generate_private_key()
    envelope = seal(b"x", sender=impostor, recipient=public_key_bytes(aggregator), context=CTX)
    with pytest.raises(DecryptionError):
        open_with(keys, envelope)
    with pytest.raises(DecryptionError):
        open_sealed(sealed(keys), recipient=generate_private_key(), sender=public_key_bytes(keys[1]), context=CTX)
