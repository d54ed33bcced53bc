"""Local training's length: at least `local_epochs` epochs and, without DP-SGD, at least
`min_local_steps` SGD steps a round, so a small share trains as long as a large one."""

from __future__ import annotations

import numpy as np
import pytest

from fedmarket.ml.data import load_digits_dataset
from fedmarket.ml.training import initial_model, train_local
from fedmarket_schemas.market import DifferentialPrivacy, ModelConfig, TrainingConfig

MODEL = ModelConfig()


@pytest.mark.parametrize(
    ("rows", "fields", "epochs"),
    [
        (50, {}, 25),  # 4 batches of 16 an epoch: 25 epochs make 100 steps
        (48, {}, 34),  # 3 batches: 33 epochs are 99 steps, one short
        (157, {}, 10),  # 10 batches
        (500, {}, 5),  # 32 batches: local_epochs already takes 160 steps
        (50, {"min_local_steps": 0}, 5),
        (50, {"local_epochs": 30}, 30),
        (50, {"batch_size": 50}, 100),
        (50, {"dp": DifferentialPrivacy(noise_multiplier=1.0, epsilon_budget=4.0)}, 5),  # no floor under DP
    ],
)
def test_a_round_is_local_epochs_or_the_floor_on_steps_whichever_is_longer(rows, fields, epochs):
    assert TrainingConfig(**fields).epochs_for(rows) == epochs


def test_a_small_share_trains_the_epochs_the_floor_asks_for():
    """One epoch asked, with a floor of 12 steps on a share of 4 batches: the same model as three
    epochs without the floor (the shuffles are drawn from one seeded generator)."""
    share = load_digits_dataset().subset(np.arange(64))
    start = initial_model(MODEL, seed=0)
    floored = train_local(start, share, MODEL, TrainingConfig(local_epochs=1, min_local_steps=12), seed=3)
    three = train_local(start, share, MODEL, TrainingConfig(local_epochs=3, min_local_steps=0), seed=3)
    one = train_local(start, share, MODEL, TrainingConfig(local_epochs=1, min_local_steps=0), seed=3)
    assert np.array_equal(floored, three) and not np.allclose(floored, one)
