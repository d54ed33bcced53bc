"""Replay and free-rider check: a submission that is (nearly) equal to the unchanged global model,
to the trainer's own previous local model, or to another trainer's model of this round was not
trained on this round's data.

Free-riders (Lin et al., "Free-riders in Federated Learning: Attacks and Defenses", 2019) return
the global model, perhaps with small noise, to collect rewards without data; replay resubmits an
old model; colluders who craft one shared model (A Little Is Enough, inner-product manipulation)
submit identical copies. "Nearly equal" is relative to the round's typical update: distance at
most `tolerance` x the median ||w_i - start||. This rule is not in sources/004; the market needs it
because the paper's participation reward R_p pays for every benign round, and a free-rider's
model is close to the honest average, so the distance rule keeps it.

A free-rider who adds noise larger than the tolerance escapes this check; its noise then shows up
as distance from the honest models (stage 2 of the two-stage rule).

Near-copies: colluders who each add their own small noise to one crafted model (the jittered
attacks of fedmarket/simulation/attacks/adaptive.py) escape the copy tolerance, yet stay far
closer to each other than trainers with their own data are. As FoolsGold (Fung et al., "The
Limitations of Federated Learning in Sybil Settings", RAID 2020) flags sybils by their similarity,
a model whose nearest neighbour is within NEAR_COPY x the median nearest-neighbour distance of the
round is removed. Departures: FoolsGold down-weights by cosine over each client's history; this
keeps the market's one-round view and removes. The median is an honest trainer's while the
colluders are a minority, and honest nearest-neighbour distances in high dimension concentrate
near it, so the cut leaves them alone.
"""

from __future__ import annotations

import numpy as np

from fedmarket.algorithms.linalg import rowwise_sq_distances
from fedmarket.algorithms.outliers.base import DETECTORS, Detection, History, RoundInput

TOLERANCE = 0.01
NEAR_COPY = 0.25


def replay_reasons(round: RoundInput, history: History, tolerance: float = TOLERANCE) -> dict[int, str]:
    n = round.size
    if n == 0:
        return {}
    models = np.asarray(round.models, dtype=np.float64)
    update_norms = np.sqrt(round.sq_updates)
    scale = float(np.median(update_norms))
    limit = tolerance * scale
    reasons: dict[int, str] = {}
    for i in np.flatnonzero(update_norms <= limit):
        reasons[int(i)] = f"free-riding: update norm {update_norms[i]:.3g} <= {tolerance:g} x median {scale:.3g}"

    if history.last_models is not None:
        own = np.sqrt(rowwise_sq_distances(models, history.last_models, history.rows_for(round.trainers)))
        for i in np.flatnonzero(own <= limit):
            reasons.setdefault(int(i), f"replay: distance {own[i]:.3g} to its own previous model <= {limit:.3g}")

    pairwise = np.sqrt(round.sq_distances)
    np.fill_diagonal(pairwise, np.inf)
    for i, j in zip(*np.nonzero(pairwise <= limit)):
        reasons.setdefault(int(i), f"copy: distance {pairwise[i, j]:.3g} to {round.trainers[j]}'s model <= {limit:.3g}")
    reasons.update({i: why for i, why in near_copies(round, pairwise).items() if i not in reasons})
    return reasons


def near_copies(round: RoundInput, pairwise: np.ndarray) -> dict[int, str]:
    """Models whose nearest neighbour is within NEAR_COPY x the round's median nearest-neighbour
    distance (`pairwise`: distances with an infinite diagonal)."""
    if round.size < 2:
        return {}
    nearest = pairwise.min(axis=1)
    limit = NEAR_COPY * float(np.median(nearest))
    return {
        int(i): f"near-copy: distance {nearest[i]:.3g} to {round.trainers[int(pairwise[i].argmin())]}'s model "
        f"<= {NEAR_COPY:g} x the median nearest distance {limit / NEAR_COPY:.3g}"
        for i in np.flatnonzero(nearest <= limit)
    }


@DETECTORS.register("replay")
def replay(round: RoundInput, history: History) -> Detection:
    """Remove free-riders, replays, copies and near-copies; keep everything else."""
    return Detection.keeping(round.size, replay_reasons(round, history))
