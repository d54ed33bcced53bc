"""What every attack is: an optional label poisoning of the attacker's own data before training,
and the model it submits, crafted from what it knows this round (`AttackContext`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedmarket.algorithms.registry import Registry
from fedmarket_schemas.secagg import KeyBundle


@dataclass(frozen=True)
class AttackContext:
    local: np.ndarray  # the attacker's model, trained on its own (possibly poisoned) data
    start: np.ndarray  # this round's global model
    honest: np.ndarray  # the honest local models of this round (omniscient colluders: ALIE, IPM)
    own_previous: np.ndarray | None  # what this attacker submitted in the previous round
    trainers: int  # L
    colluders: int  # how many trainers attack
    rng: np.random.Generator
    index: int = 0  # this attacker's place among the colluders
    # The market's rule, which is public: whether it keeps every colluder's model (one row each)
    # this round. None where the attacker cannot run it (the demo's trainers).
    accepts: Callable[[np.ndarray], bool] | None = None

    def honest_updates(self) -> np.ndarray:
        return self.honest - self.start


class Attack:
    """Base: trains honestly and submits the result. Subclasses override what they poison."""

    name = "honest"
    description = "no attack"
    on_chain = False  # True: it acts on the sealed upload, which only a market has, not the simulation
    answers_complaints = True  # in secure aggregation: whether it answers complaints against its keys

    def upload(self, sealed: bytes) -> bytes:
        """The bytes stored and submitted by CID in place of the sealed update."""
        return sealed

    def key_bundle(self, bundle: KeyBundle) -> KeyBundle:
        """In secure aggregation: the key bundle it posts in place of the one it dealt."""
        return bundle

    def poison_labels(self, labels: np.ndarray, classes: int) -> np.ndarray:
        return labels

    def craft(self, context: AttackContext) -> np.ndarray:
        return context.local

    def poisons(self, context: AttackContext) -> bool:
        """Whether this round's submission is poisoned (a replay has nothing to replay in its
        first round, so it trains honestly there)."""
        return True


ATTACKS: Registry[Attack] = Registry("attack")


def register(cls: type[Attack]) -> type[Attack]:
    ATTACKS.register(cls.name)(cls())
    return cls
