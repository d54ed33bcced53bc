"""Label flipping (Tolpegin et al., "Data Poisoning Attacks Against Federated Learning Systems",
ESORICS 2020): the attacker trains honestly on its own data with every label y replaced by
classes - 1 - y, and submits that model."""

from __future__ import annotations

import numpy as np

from fedmarket.simulation.attacks.base import Attack, register


@register
class LabelFlip(Attack):
    name = "label_flip"
    description = "trained on labels y -> classes - 1 - y"

    def poison_labels(self, labels: np.ndarray, classes: int) -> np.ndarray:
        return (classes - 1 - labels).astype(labels.dtype)
