"""Colluding attacks that hide inside the honest spread. Both assume omniscient attackers that see
this round's honest models (the convention of byzfl and of the papers' strongest setting), and
every colluder submits the same crafted model.

- alie: A Little Is Enough (Baruah, Baruch and Goldberg, NeurIPS 2019): per coordinate
  mu - z sigma of the honest models, z = Phi^-1((n - s) / n), s = floor(n / 2 + 1) - f; a shift
  small enough to pass distance rules, applied to every coordinate at once.
- ipm: inner-product manipulation (Xie, Koyejo and Gupta, "Fall of Empires", UAI 2020): the
  negated mean honest update scaled by epsilon (0.5), so the aggregate's inner product with the
  true update turns negative.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from fedmarket.simulation.attacks.base import Attack, AttackContext, register


def alie_z(n: int, f: int) -> float:
    s = n // 2 + 1 - f
    return NormalDist().inv_cdf((n - s) / n) if 0 < s < n else 0.0


@register
class Alie(Attack):
    name = "alie"
    description = "A Little Is Enough: mu - z sigma per coordinate"

    def craft(self, context: AttackContext) -> np.ndarray:
        z = alie_z(context.trainers, context.colluders)
        return context.honest.mean(axis=0) - z * context.honest.std(axis=0)


@register
class InnerProductManipulation(Attack):
    name = "ipm"
    description = "inner-product manipulation: -epsilon x mean honest update"
    epsilon = 0.5

    def craft(self, context: AttackContext) -> np.ndarray:
        return context.start - self.epsilon * context.honest_updates().mean(axis=0)
