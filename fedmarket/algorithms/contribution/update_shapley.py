"""`update_shapley`: the Shapley value of each trainer's update in its round's FedAvg step,
valued by the test set's log-likelihood, summed over rounds (`update_loo`, the default, values the
same game at the whole round only, and says why).

In round t, start model w and updates d_i = w_i - w, the N benign trainers play as G players:
each group of near-duplicate updates (`redundant_groups`; a lone trainer is a group of one) plays
as one, with the mean update d_g of its members. The value of a coalition S of players is
v(S) = LL(w + sum_{g in S} d_g / G): the step the round takes if only S's players had sent their
updates (an absent player sends none, the others keep their 1/G weight). C_g(t) is the Shapley
value of g in that game (Shapley 1953; for data, Ghorbani and Zou, ICML 2019), exact for up to
MAX_EXACT players, estimated from PERMUTATIONS_PER_PLAYER x G random permutations above, with its
standard error; a group's members share it equally, and C_i = sum_t C_i(t).

Departures from sources/004's RLOO (section III.A, eq. (2)), each for fairness between trainers
who bring the same kind of data, as `fedmarket bench contribution` measures:
- the utility is the test log-likelihood, not accuracy: accuracy moves in steps of one test sample,
  so equal trainers' differences were a step or two of noise, which per-round normalisation then
  blew up;
- every coalition is valued (or, above MAX_EXACT, many permutations), not one subset of about
  log N trainers per trainer: a single random subset decides a trainer's pay by chance;
- a coalition's model is the round's step with the absent trainers' updates left out, not the
  average of the coalition's own models: averaging a small coalition gives one narrow trainer's
  model (a trainer alone holding two labels) the weight of the whole round, so the rule punished
  exactly the rare data the paper means to reward;
- contributions are summed over rounds without per-round normalisation: a round's values are
  already in the same unit (log-likelihood gained), and dividing a quiet round by its own small
  total amplified its noise; the contract pays by C_i^+ / sum_j C_j^+, which needs no scale;
- near-duplicate updates (two identities holding one data set) share one player's value, so
  splitting an identity gains nothing (in the spirit of Ohrimenko, Tople and Tschiatschek,
  "Collaborative Machine Learning Markets with Data-Replication-Robust Payments", 2019).
"""

from __future__ import annotations

from math import factorial

import numpy as np

from fedmarket.algorithms.contribution.base import METRICS, RoundModels, Utility
from fedmarket.algorithms.linalg import pairwise_sq_distances
from fedmarket_schemas.settlement import ContributionReport

MAX_EXACT = 10  # 2^10 coalitions a round
PERMUTATIONS_PER_PLAYER = 40
# Two updates closer than this fraction of the round's median pairwise update distance come from
# (nearly) the same data: one share trained with another seed lands well below it, another IID
# share well above (`fedmarket bench contribution` reports both distances per round).
REDUNDANCY = 0.55


class StepValue:
    """v(S) = utility(start + sum of S's groups' mean updates / G), each distinct S evaluated once."""

    def __init__(self, round: RoundModels, groups: list[list[int]], utility: Utility):
        self.utility = utility
        self.start = round.start_model
        updates = round.models - round.start_model
        self.group_steps = np.stack([updates[g].mean(axis=0) / len(groups) for g in groups])
        self.cache: dict[frozenset[int], float] = {}
        self.evaluations = 0

    def __call__(self, members) -> float:
        key = frozenset(members)
        if key not in self.cache:
            step = self.group_steps[sorted(key)].sum(axis=0) if key else 0.0
            self.cache[key] = float(self.utility(self.start + step))
            self.evaluations += 1
        return self.cache[key]

    def at(self, step: np.ndarray) -> float:
        """v of the coalition whose groups' steps sum to `step`, not cached: a random order's
        prefixes almost never repeat, and caching them all grows with players^2."""
        self.evaluations += 1
        return float(self.utility(self.start + step))


def redundant_groups(round: RoundModels, ratio: float = REDUNDANCY) -> list[list[int]]:
    """Groups of trainers whose updates are all pairwise closer than `ratio` x the round's median
    pairwise update distance (complete linkage: closest pairs first, two groups merge only if
    every cross pair is that close, so a chain of neighbours is never one group), as lists of row
    indices in order; with fewer than three trainers there is no median to judge by. Pairs at
    equal distance are taken in the order of their updates' bytes, not of the trainers' rows, so
    the groups do not depend on the order trainers are listed in."""
    n = len(round.trainers)
    if n < 3:
        return [[i] for i in range(n)]
    updates = round.models - round.start_model
    distances = np.sqrt(pairwise_sq_distances(updates))
    limit = ratio * float(np.median(distances[np.triu_indices(n, 1)]))
    group_of = list(range(n))
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    content = [np.ascontiguousarray(u, dtype=np.float64).tobytes() for u in updates]
    close = [
        (distances[i, j], *sorted((content[i], content[j])), i, j)
        for i, j in zip(*np.nonzero(np.triu(distances < limit, k=1)))
    ]
    for *_, i, j in sorted(close):
        a, b = group_of[i], group_of[j]
        if a == b or max(distances[p, q] for p in members[a] for q in members[b]) >= limit:
            continue
        for p in members.pop(b):
            group_of[p] = a
            members[a].append(p)
    return sorted(sorted(g) for g in members.values())


def exact_values(players: int, value: StepValue) -> np.ndarray:
    """Shapley values of `players` from all 2^players coalitions."""
    masks = np.arange(1 << players)
    values = np.array([value([p for p in range(players) if m >> p & 1]) for m in masks])
    sizes = np.array([bin(m).count("1") for m in masks])
    weight = np.array([factorial(s) * factorial(players - s - 1) / factorial(players) for s in range(players)])
    phi = np.zeros(players)
    for p in range(players):
        without = masks[(masks >> p & 1) == 0]
        phi[p] = float(np.sum(weight[sizes[without]] * (values[without | (1 << p)] - values[without])))
    return phi


def sampled_values(players: int, value: StepValue, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values and their standard errors from random permutations (each player's mean
    marginal gain over PERMUTATIONS_PER_PLAYER x players orders)."""
    samples = PERMUTATIONS_PER_PLAYER * players
    total, total_sq = np.zeros(players), np.zeros(players)
    empty = value(())
    for _ in range(samples):
        before, step = empty, np.zeros_like(value.group_steps[0])
        for p in rng.permutation(players):
            step = step + value.group_steps[p]  # the prefix's step, one group added: O(d), not O(players d)
            after = value.at(step)
            total[p] += after - before
            total_sq[p] += (after - before) ** 2
            before = after
    mean = total / samples
    variance = np.maximum(total_sq / samples - mean**2, 0.0)
    return mean, np.sqrt(variance / samples)


@METRICS.register("update_shapley")
def update_shapley(rounds: list[RoundModels], utility: Utility, seed: int) -> ContributionReport:
    totals: dict[str, float] = {}
    variances: dict[str, float] = {}
    per_round: list[dict[str, float]] = []
    evaluations = 0
    for rm in rounds:
        if not rm.trainers:
            per_round.append({})
            continue
        groups = redundant_groups(rm)
        value = StepValue(rm, groups, utility)
        if len(groups) <= MAX_EXACT:
            phi, error = exact_values(len(groups), value), np.zeros(len(groups))
        else:
            phi, error = sampled_values(len(groups), value, np.random.default_rng([seed, rm.round]))
        evaluations += value.evaluations
        row = {}
        for members, share, err in zip(groups, phi, error):
            for i in members:
                row[rm.trainers[i]] = float(share) / len(members)
                variances[rm.trainers[i]] = variances.get(rm.trainers[i], 0.0) + (float(err) / len(members)) ** 2
        per_round.append(row)
        for t, c in row.items():
            totals[t] = totals.get(t, 0.0) + c
    return ContributionReport(
        method="update_shapley",
        per_round=per_round,
        total=totals,
        evaluations=evaluations,
        std_error={t: float(np.sqrt(v)) for t, v in variances.items()},
        utility="log_likelihood",
    )


update_shapley.utility = "log_likelihood"  # what assess_contributions values coalitions by
