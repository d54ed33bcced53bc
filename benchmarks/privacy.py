"""`fedmarket bench dp`: what differential privacy costs. Digits, 8 trainers that really train with
DP-SGD (Opacus) for 10 rounds within each epsilon (delta 1e-5, clipping norm 1; the noise set so
the smallest share trains every round), without attackers and with 3 of them, under the market's
default rule: the final test accuracy, and whether the rule still tells attackers from honest
trainers whose updates the noise spreads (honest_kept, cross_trainer_accuracy).
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from fedmarket.simulation.federated import NO_ATTACK, Scenario, simulate
from fedmarket_schemas.market import ModelKind

MALICIOUS = 3


class PrivacyRow(BaseModel):
    model: str
    epsilon: float  # inf: no DP
    attack: str
    malicious: int
    seed: int
    final_accuracy: float
    honest_kept: float
    cross_trainer_accuracy: float | None


def run(
    epsilons: list[float],
    attacks: list[str],
    seeds: list[int],
    *,
    model: str = "lr",
    detector: str = "two_stage_guarded",
    trainers: int = 8,
    rounds: int = 10,
    progress=None,
) -> list[PrivacyRow]:
    rows = []
    for epsilon in epsilons:
        for attack in attacks:
            for seed in seeds:
                scenario = Scenario(
                    model=ModelKind(model),
                    trainers=trainers,
                    malicious=0 if attack == NO_ATTACK else MALICIOUS,
                    attack=attack,
                    rounds=rounds,
                    detector=detector,
                    seed=seed,
                    dp_epsilon=None if math.isinf(epsilon) else epsilon,
                )
                result = simulate(scenario)
                rows.append(
                    PrivacyRow(
                        model=model,
                        epsilon=epsilon,
                        attack=attack,
                        malicious=len(result.attackers),
                        seed=seed,
                        final_accuracy=result.final_accuracy,
                        honest_kept=result.honest_kept(),
                        cross_trainer_accuracy=result.cross_trainer_accuracy(),
                    )
                )
                if progress:
                    progress(rows[-1])
    return rows
