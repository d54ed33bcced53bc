"""Attacks on the protocol rather than on the model: what a trainer uploads under its commitment.

- garbage: commits to its honestly trained update and uploads a sealed envelope whose ciphertext
  does not open (one bit flipped after sealing). A proven round hashes every slot it counts, so
  the aggregator must exclude it, with its key as evidence, to prove the round without it
  (contracts/README.md, "Exclusions"). Not in the sources: it attacks fedmarket's sealing step.
- bad_shares: in secure aggregation, deals its seeds so that a majority of the holders get shares
  that do not open for them (each gets another holder's sealed shares), and answers no complaint:
  without verifiable sharing and complaints its seeds could not be rebuilt and every round it
  takes part in would stop (fedmarket/secagg/protocol.py). Not in the sources either.
"""

from __future__ import annotations

from fedmarket.simulation.attacks.base import Attack, register
from fedmarket_schemas.secagg import KeyBundle


@register
class Garbage(Attack):
    name = "garbage"
    description = "uploads a sealed update that does not open"
    on_chain = True

    def upload(self, sealed: bytes) -> bytes:
        return sealed[:-1] + bytes([sealed[-1] ^ 1])


@register
class BadShares(Attack):
    name = "bad_shares"
    description = "secure aggregation: deals a majority of holders shares that do not open, answers no complaint"
    on_chain = True
    answers_complaints = False

    def key_bundle(self, bundle: KeyBundle) -> KeyBundle:
        others = [k for k, h in enumerate(bundle.holders) if h != bundle.dealer][: bundle.threshold]
        sealed = list(bundle.sealed)
        for k, source in zip(others, others[1:] + others[:1]):  # each gets the next one's envelope
            sealed[k] = bundle.sealed[source]
        return bundle.model_copy(update={"sealed": tuple(sealed)})
