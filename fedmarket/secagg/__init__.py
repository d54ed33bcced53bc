"""Secure aggregation: trainers mask their models so that the aggregator, and anyone else, learns
only the sum of the survivors' models (Bonawitz et al., "Practical Secure Aggregation for
Privacy-Preserving Machine Learning", CCS 2017; OmniLytics, sources/000, aggregates this way).

- `feldman`: verifiable threshold sharing of scalar seeds (Feldman 1987, on secp256k1).
- `masks`: the fixed-point rings (Z_2^64; BN254's field where norm proofs bind the models), the
  seeded mask streams, masking and unmasking.
- `dleq`: a pair's shared mask point revealed with a Chaum-Pedersen proof.
- `protocol`: per-round seeds, the key bundle a trainer publishes once, the share reveal it
  publishes each round, and rebuilding a round's sum from what was published.
"""

from fedmarket.secagg.masks import BN254, Z64, MaskContext, Ring, decode_sum, encode_model, ring_for
from fedmarket.secagg.protocol import (
    Recovery,
    RoundSecrets,
    Trainer,
    make_bundle,
    make_reveal,
    mask_model,
    open_bundle_shares,
    recover_sum,
    round_secrets,
    threshold_for,
)

__all__ = [
    "BN254",
    "Z64",
    "MaskContext",
    "Recovery",
    "Ring",
    "RoundSecrets",
    "Trainer",
    "decode_sum",
    "encode_model",
    "make_bundle",
    "make_reveal",
    "mask_model",
    "open_bundle_shares",
    "recover_sum",
    "ring_for",
    "round_secrets",
    "threshold_for",
]
