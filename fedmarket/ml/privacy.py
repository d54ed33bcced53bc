"""Differential privacy for trainers: DP-SGD (Abadi et al., CCS 2016) with Opacus, and what it
spends counted by Opacus's RDP accountant (Mironov, CSF 2017).

sources/004 (section II, key feature 2, "Privacy") lets trainers "opt for differential
privacy" before uploading. Departures: here the task requires it of every trainer, with one
noise multiplier and clipping norm, so that the detector compares updates noised alike and the
owner knows what each update gives away; and a trainer refuses a round that would take it past
the task's budget.

A trainer trains `local_epochs` epochs of Poisson-sampled batches each round, at Opacus's sample
rate 1 / ceil(rows / batch_size), so what it has spent after r rounds follows from the task and
its row count alone: it is recomputed from the rounds the chain says it trained in, and needs no
state that a restart could lose.
"""

from __future__ import annotations

import secrets
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedmarket.errors import ConfigError, PrivacyBudgetError
from fedmarket_schemas.market import DifferentialPrivacy, TrainingConfig
from fedmarket_schemas.trainer import PrivacySpent

if TYPE_CHECKING:  # opacus loads torch.distributed: imported by the functions that use it
    from opacus.accountants import RDPAccountant


def batches_per_epoch(rows: int, training: TrainingConfig) -> int:
    return training.batches_per_epoch(rows)


def spent(training: TrainingConfig, rows: int, rounds: int) -> PrivacySpent:
    """(epsilon, delta) after `rounds` rounds of DP-SGD training on `rows` rows."""
    from opacus.accountants import RDPAccountant

    dp = _required(training)
    per_epoch = batches_per_epoch(rows, training)
    accountant = RDPAccountant()
    accountant.history = [(dp.noise_multiplier, 1 / per_epoch, per_epoch * training.local_epochs * rounds)]
    return PrivacySpent(epsilon=accountant.get_epsilon(dp.delta), delta=dp.delta, rounds=rounds)


def require_budget(training: TrainingConfig, rows: int, rounds: int) -> PrivacySpent:
    """What training a `rounds`-th round spends, or PrivacyBudgetError if it passes the budget."""
    dp = _required(training)
    after = spent(training, rows, rounds)
    if after.epsilon > dp.epsilon_budget:
        raise PrivacyBudgetError(
            f"round {rounds} of training would spend epsilon {after.epsilon:.3f} (delta {dp.delta:g}), "
            f"past the task's budget {dp.epsilon_budget:g}: this trainer trains no more rounds"
        )
    return after


def for_budget(
    epsilon: float, training: TrainingConfig, *, rows: int, rounds: int, max_grad_norm: float = 1.0, delta: float = 1e-5
) -> DifferentialPrivacy:
    """The smallest noise multiplier that lets a trainer of `rows` rows (the smallest share: larger
    ones spend less) train all `rounds` rounds within `epsilon` (Opacus's search, to 0.01)."""
    from opacus.accountants.utils import get_noise_multiplier

    per_epoch = batches_per_epoch(rows, training)
    with warnings.catch_warnings():  # the search probes noise levels far off the answer, at the alphas' edge
        warnings.filterwarnings("ignore", message="Optimal order is the")
        noise = get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=delta,
            sample_rate=1 / per_epoch,
            steps=per_epoch * training.local_epochs * rounds,
            accountant="rdp",
        )
    return DifferentialPrivacy(noise_multiplier=noise, max_grad_norm=max_grad_norm, delta=delta, epsilon_budget=epsilon)


def train_private(
    net: nn.Module,
    optimiser: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    training: TrainingConfig,
    *,
    seed: int | None = None,
    accountant: RDPAccountant | None = None,
) -> None:
    """Train `net` in place with DP-SGD: Poisson-sampled batches, per-sample clipping, Gaussian
    noise. Sampling and noise draw from a generator seeded with 63 secret bits unless `seed` is
    given (simulations): a seed anyone can derive would let them subtract the noise. Opacus's
    secure mode needs torchcsprng, which has no build for this torch. `accountant` collects the
    steps taken (tests compare it with `spent`)."""
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    dp = _required(training)
    problems = ModuleValidator.validate(net, strict=False)
    if problems:
        raise ConfigError(f"the task's model cannot train with DP-SGD: {problems[0]}")
    generator = torch.Generator().manual_seed(secrets.randbits(63) if seed is None else seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=training.batch_size, generator=generator)
    loss_fn = nn.CrossEntropyLoss()
    with warnings.catch_warnings():
        # Opacus warns that its RNG is not a CSPRNG (see above); torch, that the input needs no gradient
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        engine = PrivacyEngine(accountant="rdp")
        if accountant is not None:
            engine.accountant = accountant
        private_net, private_optimiser, private_loader = engine.make_private(
            module=net,
            optimizer=optimiser,
            data_loader=loader,
            noise_multiplier=dp.noise_multiplier,
            max_grad_norm=dp.max_grad_norm,
            poisson_sampling=True,
            noise_generator=generator,
        )
        private_net.train()
        for _ in range(training.local_epochs):
            for xb, yb in private_loader:
                private_optimiser.zero_grad()
                loss_fn(private_net(xb), yb).backward()
                private_optimiser.step()
    private_net.to_standard_module()  # its hooks and per-sample gradients go; `net` keeps the weights


def _required(training: TrainingConfig) -> DifferentialPrivacy:
    if training.dp is None:
        raise ConfigError("the task does not require DP-SGD (training.dp is unset)")
    return training.dp
