"""Attacks on the protocol rather than on the model: what a trainer uploads under its commitment.

- garbage: commits to its honestly trained update and uploads a sealed envelope whose ciphertext
  does not open (one bit flipped after sealing). A proven round hashes every slot it counts, so
  the aggregator must exclude it, with its key as evidence, to prove the round without it
  (contracts/README.md, "Exclusions"). Not in the sources: it attacks fedmarket's sealing step.
"""

from __future__ import annotations

from fedmarket.simulation.attacks.base import Attack, register


@register
class Garbage(Attack):
    name = "garbage"
    description = "uploads a sealed update that does not open"
    on_chain = True

    def upload(self, sealed: bytes) -> bytes:
        return sealed[:-1] + bytes([sealed[-1] ^ 1])
