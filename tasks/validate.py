"""Validate step: every opened update must parse as the task model's update format, with the
right tensor names, shapes and dtypes and only finite values, and lie within the task's bounds
on its entries and on its distance from the round's start model (fedmarket.ml.updates)."""

from __future__ import annotations

import numpy as np

from fedmarket.errors import UpdateError
from fedmarket.exclusions import rejection
from fedmarket.ml.updates import check_bounds, decode_update
from fedmarket_schemas.market import ModelConfig, UpdateBounds
from fedmarket_schemas.rounds import LocalModels
from fedmarket_tasks.cache import round_step
from fedmarket_tasks.fetch import OpenedSubmissions


@round_step(task_run_name="validate-updates-r{opened.round}")
def validate_updates(
    opened: OpenedSubmissions, model: ModelConfig, bounds: UpdateBounds, start_model: np.ndarray, *, key: str
) -> LocalModels:
    trainers, indices, rows = [], [], []
    rejected = dict(opened.rejected)
    for trainer in sorted(opened.plaintexts, key=opened.indices.__getitem__):
        try:
            vector = decode_update(opened.plaintexts[trainer], model)
            check_bounds(vector, start_model, bounds)
            rows.append(vector)
        except UpdateError as exc:
            rejected[trainer] = rejection(exc, bytes.fromhex(opened.envelope_keys[trainer][2:]))
            continue
        trainers.append(trainer)
        indices.append(opened.indices[trainer])
    matrix = np.stack(rows) if rows else np.zeros((0, start_model.size))
    return LocalModels(round=opened.round, trainers=trainers, indices=indices, matrix=matrix, rejected=rejected)
