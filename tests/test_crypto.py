from __future__ import annotations

import dataclasses

import pytest

from fedmarket.crypto import (
    Envelope,
    SealContext,
    generate_private_key,
    key_commitment,
    open_with_key,
    public_key_bytes,
    seal,
    submission_key,
)
from fedmarket.errors import DecryptionError, EnvelopeError, KeyMismatchError

CTX = SealContext(chain_id=1, market="0x" + "11" * 20, round=3, trainer="0x" + "22" * 20)


@pytest.fixture
def keys():
    return generate_private_key(), generate_private_key()  # aggregator, trainer


def sealed(keys, message=b"local model"):
    aggregator, trainer = keys
    return seal(message, sender=trainer, recipient=public_key_bytes(aggregator), context=CTX)


def open_with(keys, raw, context=CTX, recipient=None):
    """As the aggregator's fetch step opens a submission: parse, derive the key, open."""
    aggregator, trainer = keys
    envelope = Envelope.parse(raw)
    key = submission_key(envelope, recipient=recipient or aggregator, sender=public_key_bytes(trainer))
    return open_with_key(envelope, key, context)


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
    with pytest.raises(KeyMismatchError):
        open_with(keys, envelope)
    with pytest.raises(KeyMismatchError):
        open_with(keys, sealed(keys), recipient=generate_private_key())


def aggregator_key(keys, raw):
    aggregator, trainer = keys
    return submission_key(Envelope.parse(raw), recipient=aggregator, sender=public_key_bytes(trainer))


def test_the_published_key_of_one_envelope_opens_it_for_anyone_and_nothing_else(keys):
    raw = sealed(keys)
    key = aggregator_key(keys, raw)
    assert Envelope.parse(raw).key_commitment == key_commitment(key)
    assert open_with_key(Envelope.parse(raw), key, CTX) == b"local model"
    other = sealed(keys)  # the same trainer's next envelope: another ephemeral key, another key
    assert aggregator_key(keys, other) != key
    with pytest.raises(KeyMismatchError):
        open_with_key(Envelope.parse(other), key, CTX)
    with pytest.raises(KeyMismatchError):
        open_with_key(Envelope.parse(raw), bytes(32), CTX)  # a made-up key is no evidence


def test_a_ciphertext_replayed_to_another_round_provably_does_not_open(keys):
    """Its key is the committed one (the round is not in the derivation), and with that key
    anyone sees it open for the round it was sealed for and not for this one."""
    raw = sealed(keys)
    key = aggregator_key(keys, raw)
    later = dataclasses.replace(CTX, round=CTX.round + 1)
    with pytest.raises(DecryptionError, match="does not open") as err:
        open_with_key(Envelope.parse(raw), key, later)
    assert not isinstance(err.value, KeyMismatchError)
    assert open_with_key(Envelope.parse(raw), key, CTX) == b"local model"


def test_an_envelope_with_a_small_order_ephemeral_key_is_refused_by_name(keys):
    raw = bytearray(sealed(keys))
    raw[1:33] = bytes(32)  # the identity point: every exchange with it is zero
    with pytest.raises(EnvelopeError, match="ephemeral key"):
        open_with(keys, bytes(raw))
    raw[0] = 1  # the previous version
    with pytest.raises(EnvelopeError, match="not a fedmarket v2 envelope"):
        open_with(keys, bytes(raw))
