"""Outlier-detection step: runs the task's registered detector (default: the two-stage rule of
sources/004, see tasks/outliers/two_stage.py) and reports who was flagged and why."""

from __future__ import annotations

from schemas.rounds import LocalModels, OutlierReport
from tasks.common import compute_task
from tasks.outliers import DETECTORS, History


@compute_task(task_run_name="detect-outliers-r{models.round}")
def detect_outliers(models: LocalModels, detector: str, history: History) -> OutlierReport:
    names = models.trainers
    reasons = {t: f"submission rejected: {why}" for t, why in models.rejected.items()}
    if not names:
        return OutlierReport(round=models.round, detector=detector, kept=[], flagged=sorted(reasons), reasons=reasons)
    result = DETECTORS.get(detector)(models.matrix, names, models.round, history)
    reasons.update({names[i]: why for i, why in result.reasons.items()})
    kept = [names[i] for i in result.kept]
    history.update(names, models.matrix, kept)
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
