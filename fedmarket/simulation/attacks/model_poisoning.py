"""Model-poisoning attacks by one trainer on its own submission.

- noise: a random model, the Byzantine attack of sources/004 section V.B ("produces random
  models"): Gaussian with the per-coordinate spread of the global model (at least 0.1).
- sign_flip: the update is negated, w = start - (local - start) (Damaskinos et al., "Asynchronous
  Byzantine Machine Learning", ICML 2018, and the Byzantine literature since).
- scale: model replacement / backdoor scaling (Bagdasaryan et al., "How To Backdoor Federated
  Learning", AISTATS 2020; the backdoor attack of sources/004 V.B "scales up the weights of a
  malicious model to dominate the global model"): w = start + gamma (local - start) with
  gamma = L, the boost that replaces an equal-weight average. Departure: no backdoor trigger is
  trained in; the scaled update is the attacker's honest one, which is what detection sees.
"""

from __future__ import annotations

import numpy as np

from fedmarket.simulation.attacks.base import Attack, AttackContext, register


@register
class Noise(Attack):
    name = "noise"
    description = "random Gaussian model (Byzantine)"

    def craft(self, context: AttackContext) -> np.ndarray:
        spread = max(float(np.std(context.start)), 0.1)
        return context.rng.normal(0.0, spread, size=context.local.shape)


@register
class SignFlip(Attack):
    name = "sign_flip"
    description = "negated update"

    def craft(self, context: AttackContext) -> np.ndarray:
        return context.start - (context.local - context.start)


@register
class Scale(Attack):
    name = "scale"
    description = "update boosted by L (model replacement / backdoor)"

    def craft(self, context: AttackContext) -> np.ndarray:
        return context.start + context.trainers * (context.local - context.start)
