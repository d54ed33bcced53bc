"""Validate step: every opened update must parse as the task model's update format, with the
right tensor names, shapes and dtypes and only finite values, and lie within the task's bounds
on its entries and on its distance from the round's start model, and in a DP-SGD task report
the privacy its trainer spent within the task's budget (fedmarket.ml.updates). A rerun
whose fetch step was cached reopens the updates from the store (hence retried as a remote step)."""

from __future__ import annotations

import numpy as np

from fedmarket.errors import UpdateError
from fedmarket.exclusions import rejection
from fedmarket.ml.updates import check_bounds, check_privacy, decode_update
from fedmarket_schemas.market import ModelConfig, TrainingConfig, UpdateBounds
from fedmarket_schemas.rounds import LocalModels
from fedmarket_tasks.cache import round_step
from fedmarket_tasks.fetch import OpenedSubmissions


@round_step(remote=True, task_run_name="validate-updates-r{opened.round}")
def validate_updates(
    opened: OpenedSubmissions,
    model: ModelConfig,
    bounds: UpdateBounds,
    start_model: np.ndarray,
    training: TrainingConfig | None = None,
    *,
    key: str,
) -> LocalModels:
    trainers, indices, privacy = [], [], {}
    rejected = dict(opened.rejected)
    candidates = sorted(opened.indices, key=opened.indices.__getitem__)
    matrix = np.empty((len(candidates), start_model.size))  # rows decoded in place: one copy of the round
    for trainer in candidates:
        row = matrix[len(trainers)]
        try:
            plaintext = opened.plaintext(trainer)
            decode_update(plaintext, model, out=row)
            check_bounds(row, start_model, bounds)
            spent = check_privacy(plaintext, training) if training is not None else None
        except UpdateError as exc:
            rejected[trainer] = rejection(exc, bytes.fromhex(opened.envelope_keys[trainer][2:]))
            continue
        trainers.append(trainer)
        indices.append(opened.indices[trainer])
        if spent is not None:
            privacy[trainer] = spent
    matrix = matrix[: len(trainers)] if len(trainers) == len(candidates) else matrix[: len(trainers)].copy()
    return LocalModels(
        round=opened.round, trainers=trainers, indices=indices, matrix=matrix, rejected=rejected, privacy=privacy
    )
