"""The market's default rule, `two_stage_guarded`: the replay and free-rider check
(fedmarket/algorithms/outliers/replay.py), then the iterated two-stage rule (fedmarket/algorithms/outliers/two_stage.py) on the
models that passed it.

Why the guard comes first: copies and free-rides sit close to the honest average, so the distance
rule of sources/004 keeps them; and colluders who submit one shared crafted model (ALIE, IPM) are
removed as copies before they can shift mu and sigma.
"""

from __future__ import annotations

import numpy as np

from fedmarket.algorithms.outliers.base import DETECTORS, Detection, History, RoundInput
from fedmarket.algorithms.outliers.replay import replay_reasons
from fedmarket.algorithms.outliers.two_stage import GUARDED_RULE, detect


@DETECTORS.register("two_stage_guarded")
def two_stage_guarded(round: RoundInput, history: History) -> Detection:
    reasons = replay_reasons(round, history)
    rest = np.array([i for i in range(round.size) if i not in reasons], dtype=np.int64)
    inner = detect(round.subset(rest), history, GUARDED_RULE)
    reasons.update({int(rest[i]): why for i, why in inner.reasons.items()})
    return Detection.keeping(
        round.size,
        reasons,
        cross_round_scores={int(rest[i]): s for i, s in inner.cross_round_scores.items()},
        cross_round_triggered=inner.cross_round_triggered,
        cross_trainer_scores={int(rest[i]): s for i, s in inner.cross_trainer_scores.items()},
        boundary=inner.boundary,
    )
