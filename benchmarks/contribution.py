"""`fedmarket bench contribution`: how fairly each contribution measure pays on digits, with 5
trainers (sources/004's figures) and 8, over several seeds.

Scenarios: IID; label-disjoint (the ten labels split among the trainers); rare labels (trainer 1
alone holds labels 0 and 1, the others share labels 2-9 IID); duplicated (IID, and the last
trainer holds a copy of trainer 1's share: one identity split in two); noisy labels (IID, and the
last trainer's labels are half replaced by random ones). Rows: every trainer's normalised
contribution C_i / sum_j C_j (or / sum_j |C_j| when that sum is not positive) with its standard
error where the method samples. Summary, per scenario, size and method over the seeds:
- `cv_equal`: the coefficient of variation of the contributions of the trainers that hold the
  same kind of data (all in IID; the IID sharers otherwise);
- `check`, the scenario's own test, with `meets` (the issue-19 target): IID cv <= 0.2;
  label-disjoint: the smallest contribution, > 0; rare labels: the rare trainer's rank, <= 2 and
  positive; duplicated: the pair's share over the share trainer 1 gets without its copy, <= 1;
  noisy labels: the noisy trainer's share minus the smallest clean one, < 0.
Trainers are numbered from 1 as in the paper."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from fedmarket.algorithms.aggregators import AGGREGATORS
from fedmarket.algorithms.contribution import METRICS, RoundModels, utility_of
from fedmarket.ml.data import Dataset, load_digits_dataset, owner_split, split_iid
from fedmarket.ml.training import accuracy, initial_model, log_likelihood, train_local
from fedmarket_schemas.market import ModelConfig, TrainingConfig

SCENARIOS = ("iid", "label_disjoint", "rare_labels", "duplicated", "noisy_labels")
METHODS = ("update_loo", "update_shapley", "rloo", "loo", "shapley", "gtg_shapley")


class ContributionRow(BaseModel):
    scenario: str
    trainers: int
    seed: int
    method: str
    trainer: int
    contribution: float
    std_error: float
    evaluations: int


class FairnessRow(BaseModel):
    scenario: str
    trainers: int
    method: str
    seeds: int
    cv_equal: float
    check: float
    meets: bool


def partition(pool: Dataset, scenario: str, trainers: int, seed: int) -> list[Dataset]:
    if scenario == "iid":
        return split_iid(pool, trainers, seed=seed)
    if scenario == "label_disjoint":
        labels = np.array_split(np.arange(10), trainers)
        return [pool.subset(np.flatnonzero(np.isin(pool.labels, own))) for own in labels]
    if scenario == "rare_labels":
        rare = np.isin(pool.labels, [0, 1])
        rest = split_iid(pool.subset(np.flatnonzero(~rare)), trainers - 1, seed=seed)
        return [pool.subset(np.flatnonzero(rare)), *rest]
    if scenario == "duplicated":
        shares = split_iid(pool, trainers - 1, seed=seed)
        return [*shares, shares[0]]
    if scenario == "noisy_labels":
        shares = split_iid(pool, trainers, seed=seed)
        rng = np.random.default_rng([seed, 19])
        last = shares[-1]
        labels = last.labels.copy()
        noisy = rng.choice(len(labels), size=len(labels) // 2, replace=False)
        labels[noisy] = rng.integers(0, 10, size=len(noisy))
        return [*shares[:-1], Dataset(last.features, labels)]
    raise ValueError(f"unknown scenario {scenario!r}")


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


def _values(history: list[RoundModels], test: Dataset, model: ModelConfig, method: str, seed: int):
    value = {"accuracy": accuracy, "log_likelihood": log_likelihood}[utility_of(method)]
    report = METRICS.get(method)(history, lambda v: value(v, test, model), seed)
    total = sum(report.total.values())
    scale = total if total > 0 else sum(abs(v) for v in report.total.values()) or 1.0
    shares = normalised(report.total)
    return report, {int(t): shares[t] for t in shares}, {int(t): e / scale for t, e in report.std_error.items()}


def _check(scenario: str, shares: dict[int, float], single: float | None) -> tuple[float, list[int]]:
    """The scenario's own test value and the trainers holding the same kind of data."""
    n = len(shares)
    if scenario == "iid":
        equal = list(shares)
        return _cv([shares[i] for i in equal]), equal
    if scenario == "label_disjoint":
        return min(shares.values()), []
    if scenario == "rare_labels":
        ranked = sorted(shares, key=lambda t: -shares[t])
        return float(ranked.index(1) + 1) * (1 if shares[1] > 0 else -1), list(range(2, n + 1))
    if scenario == "duplicated":
        return (shares[1] + shares[n]) / single if single else float("nan"), list(range(2, n))
    return shares[n] - min(shares[i] for i in range(1, n)), list(range(1, n))  # noisy_labels


# the worst of several seeds' checks: the largest where larger is worse, the smallest where smaller
# is; a rare trainer valued negatively is worse than any rank
WORST = {
    "iid": max,
    "label_disjoint": min,
    "rare_labels": lambda checks: min(checks) if min(checks) < 0 else max(checks),
    "duplicated": max,
    "noisy_labels": max,
}


def _meets(scenario: str, check: float) -> bool:
    return {
        "iid": check <= 0.2,
        "label_disjoint": check > 0,
        "rare_labels": 0 < check <= 2,
        "duplicated": check <= 1.0,
        "noisy_labels": check < 0,
    }[scenario]


def _cv(values: list[float]) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.std() / abs(values.mean())) if len(values) > 1 and values.mean() else 0.0


def run(
    scenarios: list[str],
    methods: list[str],
    trainers: tuple[int, ...] = (5, 8),
    rounds: int = 5,
    seeds: tuple[int, ...] = (0, 1, 2),
) -> tuple[list[ContributionRow], list[FairnessRow]]:
    model = ModelConfig()
    rows: list[ContributionRow] = []
    found: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    for seed in seeds:
        pool, test = owner_split(load_digits_dataset(), owner_fraction=0.3, seed=seed)
        for n in trainers:
            reference: dict[str, float] = {}
            if "duplicated" in scenarios:  # trainer 1's share when it has no copy
                history = train_rounds(partition(pool, "iid", n - 1, seed), model, rounds, seed)
                for method in methods:
                    reference[method] = _values(history, test, model, method, seed)[1][1]
            for scenario in scenarios:
                history = train_rounds(partition(pool, scenario, n, seed), model, rounds, seed)
                for method in methods:
                    report, shares, errors = _values(history, test, model, method, seed)
                    rows += [
                        ContributionRow(
                            scenario=scenario,
                            trainers=n,
                            seed=seed,
                            method=method,
                            trainer=t,
                            contribution=v,
                            std_error=errors.get(t, 0.0),
                            evaluations=report.evaluations,
                        )
                        for t, v in sorted(shares.items())
                    ]
                    check, equal = _check(scenario, shares, reference.get(method))
                    found.setdefault((scenario, n, method), []).append((_cv([shares[t] for t in equal]), check))
    summary = []
    for (scenario, n, method), values in found.items():
        worst = WORST[scenario]([c for _, c in values])  # the worst seed decides the target
        summary.append(
            FairnessRow(
                scenario=scenario,
                trainers=n,
                method=method,
                seeds=len(values),
                cv_equal=float(np.mean([cv for cv, _ in values])),
                check=float(worst),
                meets=_meets(scenario, worst),
            )
        )
    return rows, summary
