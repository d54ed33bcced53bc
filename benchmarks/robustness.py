"""`fedmarket bench robustness`: sources/004 Table I on digits (Byzantine random models, 3 of 8
trainers; backdoor scaling, 1 of 8; 10 rounds; cross-round detection accuracy and cross-trainer
removal accuracy), plus the final test accuracy of every defence under every attack of the suite,
IID and Dirichlet(0.5). Trainers really train (fedmarket/simulation/federated.py).

A defence is a detector with the mean, or no detector with a robust aggregator (median, trimmed
mean); rows name it in `detector`.
"""

from __future__ import annotations

from pydantic import BaseModel

from fedmarket.simulation.attacks import model_attacks
from fedmarket.simulation.federated import NO_ATTACK, Scenario, simulate
from fedmarket_schemas.market import ModelKind

DEFENCES: dict[str, tuple[str, str]] = {
    "none": ("none", "mean"),
    "two_stage": ("two_stage", "mean"),
    "two_stage_iterated": ("two_stage_iterated", "mean"),
    "two_stage_guarded": ("two_stage_guarded", "mean"),
    "two_stage_proven": ("two_stage_proven", "mean"),
    "replay": ("replay", "mean"),
    "krum": ("krum", "mean"),
    "multi_krum": ("multi_krum", "mean"),
    "median": ("none", "median"),
    "trimmed_mean": ("none", "trimmed_mean"),
}
TABLE_ONE = {"noise": 3, "scale": 1}  # the paper's Byzantine and backdoor scenarios (section V.B)
SUITE_MALICIOUS = 3


class RobustnessRow(BaseModel):
    model: str
    attack: str
    split: str
    trainers: int
    malicious: int
    detector: str
    cross_round_accuracy: float | None
    cross_trainer_accuracy: float | None
    final_accuracy: float
    honest_kept: float


def malicious_for(attack: str) -> int:
    return 0 if attack == NO_ATTACK else TABLE_ONE.get(attack, SUITE_MALICIOUS)


def run(
    models: list[str],
    splits: list[str],
    attacks: list[str],
    defences: list[str],
    rounds: int = 10,
    trainers: int = 8,
    seed: int = 0,
    progress=None,
) -> list[RobustnessRow]:
    rows = []
    for model in models:
        for split in splits:
            for attack in attacks:
                for defence in defences:
                    detector, aggregator = DEFENCES[defence]
                    scenario = Scenario(
                        model=ModelKind(model),
                        trainers=trainers,
                        malicious=malicious_for(attack),
                        attack=attack,
                        split=split,
                        rounds=rounds,
                        detector=detector,
                        aggregator=aggregator,
                        seed=seed,
                    )
                    result = simulate(scenario)
                    rows.append(
                        RobustnessRow(
                            model=model,
                            attack=attack,
                            split=split,
                            trainers=trainers,
                            malicious=len(result.attackers),
                            detector=defence,
                            cross_round_accuracy=result.cross_round_accuracy(),
                            cross_trainer_accuracy=result.cross_trainer_accuracy(),
                            final_accuracy=result.final_accuracy,
                            honest_kept=result.honest_kept(),
                        )
                    )
                    if progress:
                        progress(rows[-1])
    return rows


def all_attacks() -> list[str]:
    return [NO_ATTACK, *model_attacks()]
