"""Attacks by trainers that want the participation reward without the work.

- replay: resubmits the model it submitted in the previous round (an old update); trains honestly
  only in its first round.
- free_ride: returns the round's global model with tiny noise, so it is not byte-identical (Lin et
  al., "Free-riders in Federated Learning: Attacks and Defenses", 2019).
"""

from __future__ import annotations

import numpy as np

from fedmarket.simulation.attacks.base import Attack, AttackContext, register

FREE_RIDE_NOISE = 1e-5


@register
class Replay(Attack):
    name = "replay"
    description = "resubmits its previous round's model"

    def craft(self, context: AttackContext) -> np.ndarray:
        return context.local if context.own_previous is None else context.own_previous.copy()

    def poisons(self, context: AttackContext) -> bool:
        return context.own_previous is not None


@register
class FreeRide(Attack):
    name = "free_ride"
    description = "global model plus tiny noise, no training"

    def craft(self, context: AttackContext) -> np.ndarray:
        return context.start + context.rng.normal(0.0, FREE_RIDE_NOISE, size=context.start.shape)
