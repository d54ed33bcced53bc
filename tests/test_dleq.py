"""The Chaum-Pedersen reveal of a pair's shared mask point (fedmarket/secagg/dleq.py): the point
it reveals gives the pair key both members derive, and it is accepted only from a member, for its
own pair and context."""

from __future__ import annotations

import dataclasses

import pytest
from coincurve import PrivateKey

from fedmarket.errors import CryptoError
from fedmarket.secagg.dleq import PointReveal, reveal_point, verify_point
from fedmarket.secagg.feldman import ORDER
from fedmarket.secagg.masks import MaskContext, pair_key, pair_key_from_point

CONTEXT = MaskContext(31337, "0x" + "ab" * 20, 2)
INFO = CONTEXT.info(b"pair")


def keys(seed: int) -> tuple[bytes, bytes]:
    secret = (seed * 0x9E3779B97F4A7C15 % ORDER).to_bytes(32, "big")
    return secret, PrivateKey(secret).public_key.format()


def test_a_revealed_point_gives_the_pair_key_both_members_derive():
    (a, a_pub), (b, b_pub) = keys(1), keys(2)
    mine, theirs = reveal_point(a, b_pub, INFO), reveal_point(b, a_pub, INFO)
    assert mine.point == theirs.point  # a B = b A
    assert verify_point(mine, a_pub, b_pub, INFO) and verify_point(theirs, b_pub, a_pub, INFO)
    assert pair_key_from_point(mine.point, a_pub, b_pub, CONTEXT) == pair_key(a, b_pub, CONTEXT)
    assert pair_key_from_point(mine.point, b_pub, a_pub, CONTEXT) == pair_key(b, a_pub, CONTEXT)


def test_a_reveal_is_refused_for_another_point_prover_pair_or_context():
    (a, a_pub), (_, b_pub), (_, c_pub) = keys(1), keys(2), keys(3)
    honest = reveal_point(a, b_pub, INFO)
    assert not verify_point(honest, c_pub, b_pub, INFO)  # claimed by another trainer
    assert not verify_point(honest, a_pub, c_pub, INFO)  # for another pair
    assert not verify_point(honest, a_pub, b_pub, CONTEXT.info(b"other"))  # another round or market
    # the point of another pair, proven with a's key: the proof is for a C, not a B
    other = reveal_point(a, c_pub, INFO)
    assert not verify_point(dataclasses.replace(other, point=honest.point), a_pub, c_pub, INFO)
    assert not verify_point(dataclasses.replace(honest, point=other.point), a_pub, b_pub, INFO)
    # the peer's key claimed as the point: what a prover without a would try
    assert not verify_point(dataclasses.replace(honest, point=b_pub), a_pub, b_pub, INFO)
    for forged in (
        dataclasses.replace(honest, challenge=(honest.challenge + 1) % ORDER),
        dataclasses.replace(honest, response=(honest.response + 1) % ORDER),
        dataclasses.replace(honest, response=0),
        PointReveal(b"\x02" + b"\xff" * 32, honest.challenge, honest.response),  # not a point
    ):
        assert not verify_point(forged, a_pub, b_pub, INFO)
    assert not verify_point(honest, b"\x05" * 33, b_pub, INFO)


def test_a_key_that_is_no_scalar_or_point_is_a_crypto_error():
    (a, _), (_, b_pub) = keys(1), keys(2)
    with pytest.raises(CryptoError, match="scalar"):
        reveal_point(b"\0" * 32, b_pub, INFO)
    with pytest.raises(CryptoError, match="point"):
        reveal_point(a, b"\x02" + b"\xff" * 32, INFO)
