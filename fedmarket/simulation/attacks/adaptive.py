"""Attacks that adapt their strength to the defence, by colluders whose models are not copies.

Shejwalkar and Houmansadr, "Manipulating the Byzantine: Optimizing Model Poisoning Attacks and
Defenses for Federated Learning" (NDSS 2021): every colluder submits mean_h + gamma p, with p the
inverse unit vector of the mean honest update and gamma the largest scale that still passes.
- tailored: the AGR-tailored attack. gamma is searched against the market's rule itself (public,
  so an omniscient colluder can run it: `AttackContext.accepts`), halving the step as in their
  Algorithm 1; the largest gamma it keeps wins. Where the rule cannot be run (the demo), it falls
  back to min_max's bound.
- min_max: the AGR-agnostic attack. gamma is the largest whose model is no farther from any honest
  model than the two farthest honest models are from each other.
- alie_noisy, ipm_noisy: ALIE and IPM (collusion.py) with each colluder's own noise added.

Departure, for every attack here: each colluder adds its own noise of JITTER x the median honest
update norm (5x the copy check's tolerance, replay.TOLERANCE), so that the colluders are not the
exact copies the copy check removes; the papers' colluders submit one shared model.
"""

from __future__ import annotations

import hashlib

import numpy as np

from fedmarket.simulation.attacks.base import Attack, AttackContext, register
from fedmarket.simulation.attacks.collusion import Alie, InnerProductManipulation

JITTER = 0.05
SEARCH_STEPS = 12


def jitters(context: AttackContext) -> np.ndarray:
    """One noise row per colluder, the same for every colluder this round (they coordinate: seeded
    by the round's start model), each of norm JITTER x the median honest update norm."""
    seed = int.from_bytes(hashlib.sha256(np.ascontiguousarray(context.start).tobytes()).digest()[:8], "little")
    noise = np.random.default_rng(seed).normal(size=(context.colluders, context.start.size))
    scale = JITTER * float(np.median(np.linalg.norm(context.honest_updates(), axis=1)))
    return noise / np.linalg.norm(noise, axis=1, keepdims=True) * scale


def inverse_unit(context: AttackContext) -> np.ndarray:
    mean_update = context.honest_updates().mean(axis=0)
    norm = float(np.linalg.norm(mean_update))
    return -mean_update / norm if norm > 0 else np.zeros_like(mean_update)


def largest_passing(passes, start: float) -> float:
    """The largest gamma in [0, 2 start] that `passes`, by the halving search of Shejwalkar and
    Houmansadr's Algorithm 1 (gamma 0 if none passes)."""
    gamma, step, best = start, start / 2, 0.0
    for _ in range(SEARCH_STEPS):
        if passes(gamma):
            best = max(best, gamma)
            gamma += step
        else:
            gamma -= step
        step /= 2
    return best


def min_max_passes(context: AttackContext, base: np.ndarray, p: np.ndarray):
    honest = context.honest
    spread = np.sqrt(max(float(((honest[:, None] - honest[None]) ** 2).sum(axis=2).max()), 0.0))
    return lambda gamma: float(np.linalg.norm(honest - (base + gamma * p), axis=1).max()) <= spread


class _Scaled(Attack):
    def gamma(self, context: AttackContext, base: np.ndarray, p: np.ndarray, noise: np.ndarray, scale: float) -> float:
        """The push; `scale`: the largest honest update norm, where the search starts from."""
        raise NotImplementedError

    def craft(self, context: AttackContext) -> np.ndarray:
        base, p, noise = context.honest.mean(axis=0), inverse_unit(context), jitters(context)
        scale = float(np.linalg.norm(context.honest_updates(), axis=1).max())
        return base + self.gamma(context, base, p, noise, scale) * p + noise[context.index]


@register
class MinMax(_Scaled):
    name = "min_max"
    description = "Min-Max: mean honest model pushed against the update, as far as the honest spread"

    def gamma(self, context, base, p, noise, scale):
        return largest_passing(min_max_passes(context, base, p), 2 * scale)


@register
class Tailored(MinMax):
    name = "tailored"
    description = "AGR-tailored: the largest push the market's own rule keeps"

    def gamma(self, context, base, p, noise, scale):
        if context.accepts is None:
            return super().gamma(context, base, p, noise, scale)
        return largest_passing(lambda gamma: context.accepts(base + gamma * p + noise), 4 * scale)


class _Jittered(Attack):
    """Mixin: the crafted model of the next class in the MRO, plus this colluder's own noise."""

    def craft(self, context: AttackContext) -> np.ndarray:
        return super().craft(context) + jitters(context)[context.index]


@register
class NoisyAlie(_Jittered, Alie):
    name = "alie_noisy"
    description = "ALIE, each colluder with its own noise"


@register
class NoisyInnerProductManipulation(_Jittered, InnerProductManipulation):
    name = "ipm_noisy"
    description = "inner-product manipulation, each colluder with its own noise"
