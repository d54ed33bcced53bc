"""Outlier-detection step: runs the task's registered detector (default: `two_stage_guarded`, the
two-stage rule of sources/004 behind a replay and free-rider check; see fedmarket/algorithms/outliers/) and
reports who was flagged and why."""

from __future__ import annotations

import numpy as np

from fedmarket.algorithms.outliers import DETECTORS, History, RoundInput
from fedmarket_schemas.rounds import LocalModels, OutlierReport
from fedmarket_tasks.cache import round_step


@round_step(task_run_name="detect-outliers-r{models.round}")
def detect_outliers(
    models: LocalModels, detector: str, history: History, start_model: np.ndarray, *, key: str
) -> OutlierReport:
    """`history` is the previous round as recorded (tasks/load.py), so this step has no side
    effect and its cached result stays valid."""
    names = models.trainers
    reasons = {t: f"excluded: {why.describe()}" for t, why in models.rejected.items()}
    if not names:
        return OutlierReport(round=models.round, detector=detector, kept=[], flagged=sorted(reasons), reasons=reasons)
    round_input = RoundInput(models=models.matrix, trainers=names, round=models.round, start=start_model)
    result = DETECTORS.get(detector)(round_input, history)
    reasons.update({names[i]: why for i, why in result.reasons.items()})
    kept = [names[i] for i in result.kept]
    return OutlierReport(
        round=models.round,
        detector=detector,
        kept=kept,
        flagged=sorted(reasons),
        reasons=reasons,
        cross_round_scores={names[i]: s for i, s in result.cross_round_scores.items()},
        cross_round_triggered=result.cross_round_triggered,
        cross_trainer_scores={names[i]: s for i, s in result.cross_trainer_scores.items()},
        boundary=result.boundary,
    )
