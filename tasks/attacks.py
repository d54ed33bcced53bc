"""Attacks a simulated malicious trainer applies to its honestly trained local model `local`,
given the round's global model `start`. Used by the demo and the tests.

- noise: a random model, the Byzantine attack of sources/004 section V.B ("produces random
  models"); Gaussian with the per-coordinate spread of the global model (at least 0.1).
- sign_flip: the update is negated, w = start - (local - start) (Byzantine sign flipping).
- scale: model replacement / backdoor scaling (Bagdasaryan et al., AISTATS 2020): the update is
  boosted by `factor` so that it dominates the average, w = start + factor * (local - start).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tasks.registry import Registry

Attack = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
ATTACKS: Registry[Attack] = Registry("attack")


@ATTACKS.register("noise")
def noise(local: np.ndarray, start: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    spread = max(float(np.std(start)), 0.1)
    return rng.normal(0.0, spread, size=local.shape)


@ATTACKS.register("sign_flip")
def sign_flip(local: np.ndarray, start: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return start - (local - start)


@ATTACKS.register("scale")
def scale(local: np.ndarray, start: np.ndarray, rng: np.random.Generator, factor: float = 8.0) -> np.ndarray:
    return start + factor * (local - start)


def default_attack_plan(malicious: int) -> list[str]:
    """The attacks of `malicious` attackers: noise, sign flip, scale, then round robin."""
    order = ["noise", "sign_flip", "scale"]
    return [order[i % len(order)] for i in range(malicious)]
