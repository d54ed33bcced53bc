"""`fedmarket bench contribution`: sources/004's contribution figures on digits with 5 trainers
(IID; label-disjoint non-IID, two labels each; rare labels, trainer 1 alone holds labels 0 and 1
and the others share labels 2-9 IID): RLOO, leave-one-out, exact Shapley and GTG-Shapley side by
side, each normalised as in the paper's figures, C_i / sum_j C_j, with the model evaluations it
used. Trainers are numbered from 1 as in the paper."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from fedmarket.algorithms.aggregators import AGGREGATORS
from fedmarket.algorithms.contribution import METRICS, RoundModels
from fedmarket.ml.data import Dataset, load_digits_dataset, owner_split, split_iid
from fedmarket.ml.training import accuracy, initial_model, train_local
from fedmarket_schemas.market import ModelConfig, TrainingConfig

SCENARIOS = ("iid", "label_disjoint", "rare_labels")
METHODS = ("rloo", "loo", "shapley", "gtg_shapley")


class ContributionRow(BaseModel):
    scenario: str
    method: str
    trainer: int
    contribution: float
    evaluations: int


def partition(pool: Dataset, scenario: str, trainers: int, seed: int) -> list[Dataset]:
    if scenario == "iid":
        return split_iid(pool, trainers, seed=seed)
    if scenario == "label_disjoint":
        labels = np.array_split(np.arange(10), trainers)
        return [pool.subset(np.flatnonzero(np.isin(pool.labels, own))) for own in labels]
    rare = np.isin(pool.labels, [0, 1])
    rest = split_iid(pool.subset(np.flatnonzero(~rare)), trainers - 1, seed=seed)
    return [pool.subset(np.flatnonzero(rare)), *rest]


def train_rounds(datasets: list[Dataset], model: ModelConfig, rounds: int, seed: int) -> list[RoundModels]:
    """Plain FedAvg (no attackers): the models every method values."""
    training = TrainingConfig.for_model(model.kind)
    global_model = initial_model(model, seed=seed)
    names = [str(i + 1) for i in range(len(datasets))]
    out = []
    for round in range(1, rounds + 1):
        models = np.stack(
            [
                train_local(global_model, d, model, training, seed=seed * 1000 + round * 10 + i)
                for i, d in enumerate(datasets)
            ]
        )
        out.append(RoundModels(round=round, trainers=names, models=models, start_model=global_model))
        global_model = AGGREGATORS.get("mean")(models)
    return out


def normalised(total: dict[str, float]) -> dict[str, float]:
    denominator = sum(total.values())
    if denominator <= 0:
        denominator = sum(abs(v) for v in total.values()) or 1.0
    return {t: v / denominator for t, v in total.items()}


def run(
    scenarios: list[str], methods: list[str], trainers: int = 5, rounds: int = 5, seed: int = 0
) -> list[ContributionRow]:
    model = ModelConfig()
    pool, test = owner_split(load_digits_dataset(), owner_fraction=0.3, seed=seed)
    rows = []
    for scenario in scenarios:
        history = train_rounds(partition(pool, scenario, trainers, seed), model, rounds, seed)
        for method in methods:
            report = METRICS.get(method)(history, lambda v: accuracy(v, test, model), seed)
            for trainer, value in normalised(report.total).items():
                rows.append(
                    ContributionRow(
                        scenario=scenario,
                        method=method,
                        trainer=int(trainer),
                        contribution=value,
                        evaluations=report.evaluations,
                    )
                )
    return rows
