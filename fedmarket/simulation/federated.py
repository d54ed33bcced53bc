"""Federated training with attackers, off chain: the loop the robustness and contribution
benchmarks and the detector tests run. Trainers train for real (torch, on digits); the registered
detector, aggregator and attacks are the ones the market uses; only chain, store and encryption are
left out, because they do not change which model is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from fedmarket.algorithms.aggregators import AGGREGATORS
from fedmarket.algorithms.outliers import DETECTORS, History, RoundInput
from fedmarket.algorithms.outliers.base import Detection
from fedmarket.errors import ConfigError, FedMarketError
from fedmarket.ml.data import Dataset, load_digits_dataset, owner_split, split_trainers
from fedmarket.ml.privacy import for_budget
from fedmarket.ml.training import accuracy, initial_model, train_local
from fedmarket.simulation.attacks import ATTACKS, AttackContext
from fedmarket_schemas.market import ModelConfig, ModelKind, TrainingConfig

NO_ATTACK = "none"


@dataclass(frozen=True)
class Scenario:
    model: ModelKind = ModelKind.lr
    trainers: int = 8
    malicious: int = 3
    attack: str = "noise"  # a registered attack, or "none"
    split: Literal["iid", "dirichlet"] = "iid"
    dirichlet_alpha: float = 0.5
    rounds: int = 10
    detector: str = "two_stage_guarded"
    aggregator: str = "mean"
    seed: int = 0
    owner_fraction: float = 0.3
    dp_epsilon: float | None = None  # DP-SGD within this budget over all rounds (fedmarket.ml.privacy)


@dataclass
class RoundOutcome:
    round: int
    detection: Detection
    flagged: set[int]
    poisoned: set[int]
    accuracy: float


@dataclass
class SimulationResult:
    scenario: Scenario
    attackers: list[int]
    rounds: list[RoundOutcome] = field(default_factory=list)

    @property
    def attacked(self) -> bool:
        return self.scenario.attack != NO_ATTACK and bool(self.attackers)

    @property
    def final_accuracy(self) -> float:
        return self.rounds[-1].accuracy

    def cross_round_accuracy(self) -> float | None:
        """Share of rounds (after the first) where stage 1 said "attack" exactly when there was
        one (sources/004 Table I, "cross-round accuracy"); None for rules without a stage 1."""
        judged = [r for r in self.rounds if r.round > 1 and r.detection.cross_round_scores]
        if not judged:
            return None
        return sum(r.detection.cross_round_triggered == self.attacked for r in judged) / len(judged)

    def cross_trainer_accuracy(self) -> float | None:
        """Share of poisoned submissions removed (Table I, "cross-trainer accuracy"); None without
        any."""
        poisoned = sum(len(r.poisoned) for r in self.rounds)
        if not self.attacked or poisoned == 0:
            return None
        return sum(len(r.flagged & r.poisoned) for r in self.rounds) / poisoned

    def honest_kept(self) -> float:
        honest = [i for i in range(self.scenario.trainers) if i not in self.attackers]
        kept = sum(len(set(honest) - r.flagged) for r in self.rounds)
        return kept / (len(honest) * len(self.rounds)) if honest else 1.0


def simulate(scenario: Scenario, training: TrainingConfig | None = None) -> SimulationResult:
    training = training or TrainingConfig.for_model(scenario.model)
    model = ModelConfig(kind=scenario.model)
    pool, test = owner_split(load_digits_dataset(), owner_fraction=scenario.owner_fraction, seed=scenario.seed)
    datasets = split_trainers(
        pool, scenario.trainers, split=scenario.split, alpha=scenario.dirichlet_alpha, seed=scenario.seed
    )
    if scenario.dp_epsilon is not None:  # noise enough for the smallest share to train every round
        smallest = min(len(d.labels) for d in datasets)
        dp = for_budget(scenario.dp_epsilon, training, rows=smallest, rounds=scenario.rounds)
        training = training.model_copy(update={"dp": dp})
    rng = np.random.default_rng(scenario.seed)
    malicious = 0 if scenario.attack == NO_ATTACK else scenario.malicious
    attackers = sorted(rng.choice(scenario.trainers, size=malicious, replace=False).tolist())
    attack = ATTACKS.get(scenario.attack) if malicious else None
    if attack is not None and attack.on_chain:
        raise ConfigError(f"attack {attack.name!r} acts on sealed uploads: only a market (the demo) plays it")
    if attack is not None:
        for i in attackers:
            data = datasets[i]
            datasets[i] = Dataset(data.features, attack.poison_labels(data.labels, model.classes))

    detector, aggregator = DETECTORS.get(scenario.detector), AGGREGATORS.get(scenario.aggregator)
    names = [f"trainer-{i}" for i in range(scenario.trainers)]
    global_model = initial_model(model, seed=scenario.seed)
    history = History()
    submitted: dict[int, np.ndarray] = {}
    result = SimulationResult(scenario=scenario, attackers=attackers)
    for round in range(1, scenario.rounds + 1):
        seeds = [scenario.seed * 10_000 + round * 100 + i for i in range(scenario.trainers)]
        locals_ = np.stack(
            [
                train_local(global_model, data, model, training, seed=seed, private_seed=seed)
                for seed, data in zip(seeds, datasets)
            ]
        )
        models = locals_.copy()
        honest = locals_[[i for i in range(scenario.trainers) if i not in attackers]]
        poisoned: set[int] = set()

        def accepts(crafted: np.ndarray, start=global_model, round=round, locals_=locals_) -> bool:
            """Whether the scenario's rule, with this round's history, keeps every colluder."""
            trial = locals_.copy()
            trial[attackers] = crafted
            try:
                kept = set(detector(RoundInput(trial, names, round, start), history).kept)
            except FedMarketError:  # a model the rule cannot take (a proven market excludes it)
                return False
            return all(i in kept for i in attackers)

        for place, i in enumerate(attackers):
            context = AttackContext(
                local=locals_[i],
                start=global_model,
                honest=honest,
                own_previous=submitted.get(i),
                trainers=scenario.trainers,
                colluders=malicious,
                rng=rng,
                index=place,
                accepts=accepts,
            )
            models[i] = attack.craft(context)
            if attack.poisons(context):
                poisoned.add(i)
        submitted = {i: models[i] for i in attackers}

        round_input = RoundInput(models=models, trainers=names, round=round, start=global_model)
        detection = detector(round_input, history)
        history.update(round_input, [names[i] for i in detection.kept])
        if detection.kept:
            global_model = aggregator(models[detection.kept])
        result.rounds.append(
            RoundOutcome(
                round=round,
                detection=detection,
                flagged=set(detection.reasons),
                poisoned=poisoned,
                accuracy=accuracy(global_model, test, model),
            )
        )
    return result
