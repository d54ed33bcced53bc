"""Local training (minibatch SGD on the trainer's private data) and evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from fedmarket.ml.data import Dataset, scale_inputs
from fedmarket.ml.models import build_model, state_to_vector, vector_to_state
from fedmarket.ml.privacy import train_private
from fedmarket_schemas.market import ModelConfig, TrainingConfig

if TYPE_CHECKING:
    from opacus.accountants import RDPAccountant


def train_local(
    global_vector: np.ndarray,
    data: Dataset,
    model: ModelConfig,
    training: TrainingConfig,
    *,
    seed: int,
    private_seed: int | None = None,
    accountant: RDPAccountant | None = None,
) -> np.ndarray:
    """Start from the global model, train `training.epochs_for(rows)` epochs, return the local model.
    A task with `training.dp` trains with DP-SGD (fedmarket.ml.privacy), whose sampling and noise
    are secret unless `private_seed` fixes them (simulations); `accountant` collects its steps."""
    generator = torch.Generator().manual_seed(seed)
    net = build_model(model)
    net.load_state_dict(vector_to_state(global_vector, model))
    optimiser = torch.optim.SGD(net.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.from_numpy(scale_inputs(data.features, model))
    y = torch.from_numpy(data.labels)
    if training.dp is not None:
        train_private(net, optimiser, x, y, training, seed=private_seed, accountant=accountant)
        return state_to_vector(net.state_dict())
    net.train()
    for _ in range(training.epochs_for(len(y))):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), training.batch_size):
            batch = order[start : start + training.batch_size]
            optimiser.zero_grad()
            loss_fn(net(x[batch]), y[batch]).backward()
            optimiser.step()
    return state_to_vector(net.state_dict())


class Scorer:
    """One model scored on one data set many times (every coalition a contribution measure
    values): the network and the scaled inputs are built once, each score loads a vector."""

    def __init__(self, data: Dataset, model: ModelConfig):
        self.model = model
        self.net = build_model(model)
        self.net.eval()
        self.x = torch.from_numpy(scale_inputs(data.features, model))
        self.y = torch.from_numpy(np.asarray(data.labels)).long()

    @torch.no_grad()
    def _logits(self, vector: np.ndarray) -> torch.Tensor:
        self.net.load_state_dict(vector_to_state(vector, self.model))
        return self.net(self.x)

    def accuracy(self, vector: np.ndarray) -> float:
        return float((self._logits(vector).argmax(dim=1) == self.y).double().mean())

    def log_likelihood(self, vector: np.ndarray) -> float:
        """Mean log-probability the model gives each sample's true label: a smooth utility, where
        accuracy moves in steps of one sample."""
        log_p = torch.log_softmax(self._logits(vector), dim=1)
        return float(log_p[torch.arange(len(self.y)), self.y].mean())


def accuracy(vector: np.ndarray, data: Dataset, model: ModelConfig) -> float:
    return Scorer(data, model).accuracy(vector)


def log_likelihood(vector: np.ndarray, data: Dataset, model: ModelConfig) -> float:
    return Scorer(data, model).log_likelihood(vector)


def initial_model(model: ModelConfig, *, seed: int) -> np.ndarray:
    return state_to_vector(build_model(model, seed=seed).state_dict())
