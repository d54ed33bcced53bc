"""Commitments recorded on chain for each update, model and the owner's data.

A commitment binds the *plaintext* (an update before sealing, the owner's data), while the CID
binds the stored bytes (the ciphertext). The contract accepts only elements of the BN254 scalar
field, the field EZKL's proof instances live in.

Models (updates, global models, aggregates) in a market whose rounds are proven are committed over
their values on the 2^-8 grid (fedmarket/fixed_point.py) as the market's round circuit binds its
inputs (fedmarket.zk.round_model_commitment: keccak of the KZG point its proofs carry, the Poseidon
hash EZKL gives a hashed input, or for a round proven by chunks the list commitment to its chunks'
hashes), so each proof is checked against the chain's commitments.
Elsewhere, and for the owner's data, a commitment is sha2-256 of the canonical serialisation
reduced into the field.
"""

from __future__ import annotations

import hashlib

import numpy as np

from fedmarket.chain import FactoryClient, MarketClient
from fedmarket.field import BN254_FIELD, to_bytes32
from fedmarket.ml.models import parameter_count
from fedmarket.settings import Settings
from fedmarket.zk import RoundCircuit, RoundLayout, build_market_round, round_model_commitment
from fedmarket_schemas.market import ModelConfig


def commit(data: bytes) -> str:
    return to_bytes32(int.from_bytes(hashlib.sha256(data).digest(), "big") % BN254_FIELD)


def commit_model(
    vector: np.ndarray | None, plaintext: bytes, *, circuit: RoundCircuit | None, global_model: bool = False
) -> str:
    """The commitment to a model whose encoding is `plaintext`: in a proven market, whose round
    circuit is `circuit`, over its grid values (a vector off the grid raises ZKError; a
    `global_model`, the initial model or an aggregate, as the circuit hashes those), else sha2-256
    of the bytes."""
    if circuit is None:
        return commit(plaintext)
    return round_model_commitment(circuit, vector, global_model=global_model)


def round_circuit(market: MarketClient, model: ModelConfig, settings: Settings) -> RoundCircuit | None:
    """The round circuit(s) a market's model commitments are made for: the builds of its round
    verifier's layout and shape (from the build cache); None in a market whose rounds are not proven."""
    shape = _round_shape(market)
    return None if shape is None else build_market_round(*shape, parameter_count(model), settings)


def round_layout(market: MarketClient) -> RoundLayout | None:
    """How the market's rounds are proven, from its round verifier's kind; None in a market whose
    rounds are not proven."""
    shape = _round_shape(market)
    return None if shape is None else shape[0]


def _round_shape(market: MarketClient) -> tuple[RoundLayout, int] | None:
    """The layout and trainers of the market's round verifier (FactoryClient.verifier_info)."""
    adapter = market.round_verifier()
    if adapter is None:
        return None
    info = FactoryClient(market.chain, market.factory()).verifier_info(adapter)
    return RoundLayout.of_verifier(info.kind, info.chunks), info.trainers
