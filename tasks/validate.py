"""Validate step: every opened update must parse as the task model's update format, with the
right tensor names, shapes and dtypes and only finite values (fedmarket.ml.updates)."""

from __future__ import annotations

import numpy as np

from fedmarket.errors import UpdateError
from fedmarket.ml.updates import decode_update
from fedmarket_schemas.market import ModelConfig
from fedmarket_schemas.rounds import LocalModels
from fedmarket_tasks.cache import round_step
from fedmarket_tasks.fetch import OpenedSubmissions


@round_step(task_run_name="validate-updates-r{opened.round}")
def validate_updates(opened: OpenedSubmissions, model: ModelConfig, parameter_count: int, *, key: str) -> LocalModels:
    trainers, indices, rows = [], [], []
    rejected = dict(opened.rejected)
    for trainer in sorted(opened.plaintexts, key=opened.indices.__getitem__):
        try:
            rows.append(decode_update(opened.plaintexts[trainer], model))
        except UpdateError as exc:
            rejected[trainer] = f"{type(exc).__name__}: {exc}"
            continue
        trainers.append(trainer)
        indices.append(opened.indices[trainer])
    matrix = np.stack(rows) if rows else np.zeros((0, parameter_count))
    return LocalModels(round=opened.round, trainers=trainers, indices=indices, matrix=matrix, rejected=rejected)
