"""Attacks on the protocol rather than on the model: what a trainer uploads under its commitment.

- garbage: commits to its honestly trained update and uploads a sealed envelope whose ciphertext
  does not open (one bit flipped after sealing). Before exclusions, one such trainer stopped every
  proven round, and with it the market; now it is excluded with its key as evidence
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
