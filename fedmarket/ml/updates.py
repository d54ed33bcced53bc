"""The one serialised form of a model update: safetensors (a JSON header of names, dtypes and
shapes, then raw little-endian tensors; no pickle, so opening an update runs no code).

fedmarket updates are float32 tensors named as the task model's `state_dict()`, with the header
metadata `{"format": "fedmarket.update.v1"}` (and, in a DP-SGD task, `"dp"`: the trainer's
PrivacySpent as JSON). `decode_update` accepts an update only if every name, shape and dtype
matches the task model and every value is finite.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.numpy import load as np_load
from safetensors.torch import save as st_save

from fedmarket.errors import MalformedUpdateError, NonFiniteUpdateError, PrivacyReportError, UpdateOutOfBoundsError
from fedmarket.ml.models import template, vector_to_state
from fedmarket_schemas.market import ModelConfig, TrainingConfig, UpdateBounds
from fedmarket_schemas.trainer import PrivacySpent

FORMAT = "fedmarket.update.v1"


def encode_update(vector: np.ndarray, model: ModelConfig, privacy: PrivacySpent | None = None) -> bytes:
    metadata = {"format": FORMAT} | ({"dp": privacy.model_dump_json()} if privacy is not None else {})
    return st_save(dict(vector_to_state(vector, model)), metadata=metadata)


def decode_update(data: bytes, model: ModelConfig, out: np.ndarray | None = None) -> np.ndarray:
    """Parse and check an update against the task model; return its flat float64 vector,
    written into `out` when given (a row of the round's matrix: no copy in between). Read with
    safetensors' numpy loader: no torch tensor is made for an update the aggregator only reads."""
    try:
        tensors = np_load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise MalformedUpdateError(f"update is not a safetensors file of numpy dtypes: {exc}") from exc
    expected = template(model)
    if set(tensors) != set(expected):
        raise MalformedUpdateError(f"update tensors {sorted(tensors)} do not match the model's {sorted(expected)}")
    for name, (shape, dtype) in expected.items():
        array, want = tensors[name], str(dtype).removeprefix("torch.")
        if array.shape != shape:
            raise MalformedUpdateError(f"tensor {name} has shape {array.shape}, expected {shape}")
        if str(array.dtype) != want:
            raise MalformedUpdateError(f"tensor {name} has dtype {array.dtype}, expected {want}")
        finite = np.isfinite(array)
        if not finite.all():
            raise NonFiniteUpdateError(f"tensor {name} holds {int(finite.size - finite.sum())} NaN or infinite values")
    if out is None:
        out = np.empty(sum(a.size for a in tensors.values()))
    offset = 0
    for name in expected:
        size = tensors[name].size
        out[offset : offset + size] = tensors[name].ravel()
        offset += size
    return out


_BLOCK = 1 << 16  # values per block of a difference: a temporary that stays in cache


def check_bounds(vector: np.ndarray, start: np.ndarray, bounds: UpdateBounds) -> None:
    """Refuse a finite model outside the task's bounds (UpdateOutOfBoundsError, naming which).
    No temporary the size of the model: the aggregator runs this on every update of a round, on
    several threads at once. Hence no BLAS either: each BLAS call would split across OpenBLAS's
    own threads, which then wait for cores the other updates' threads hold."""
    largest = max(float(vector.max()), -float(vector.min())) if vector.size else 0.0
    if largest > bounds.max_abs:
        raise UpdateOutOfBoundsError(f"an entry of magnitude {largest:.3g} is outside the task's +-{bounds.max_abs:g}")
    limit = bounds.max_norm_ratio * max(math.sqrt(_sq(start)), 1.0)
    blocks = (vector[i : i + _BLOCK] - start[i : i + _BLOCK] for i in range(0, vector.size, _BLOCK))
    moved = math.sqrt(sum(_sq(d) for d in blocks))
    if moved > limit:
        raise UpdateOutOfBoundsError(
            f"the update's norm {moved:.3g} is over the task's {bounds.max_norm_ratio:g} x the start model's ({limit:.3g})"
        )


def _sq(x: np.ndarray) -> float:
    return float(np.einsum("i,i->", x, x))  # numpy's own loop, not BLAS's ddot


def header_metadata(data: bytes) -> dict[str, str]:
    """The header's `__metadata__`: 8 bytes of little-endian length, then JSON (the safetensors
    format; its Python API reads metadata only from a file)."""
    try:
        (size,) = struct.unpack_from("<Q", data)
        return json.loads(data[8 : 8 + size]).get("__metadata__") or {}
    except (struct.error, ValueError, AttributeError) as exc:
        raise MalformedUpdateError(f"update header is not safetensors JSON: {exc}") from exc


def check_privacy(data: bytes, training: TrainingConfig) -> PrivacySpent | None:
    """In a DP-SGD task, what the update says its trainer has spent: present, of the task's delta,
    within its budget (PrivacyReportError otherwise). It is the trainer's word: no one else sees
    its data or its noise; None where the task does not require DP."""
    if training.dp is None:
        return None
    raw = header_metadata(data).get("dp")
    if raw is None:
        raise PrivacyReportError("update reports no privacy spent, and the task requires DP-SGD")
    try:
        report = PrivacySpent.model_validate_json(raw)
    except ValidationError as exc:
        raise PrivacyReportError(f"update's privacy report is malformed: {exc.errors()[0]['msg']}") from None
    if report.delta != training.dp.delta:
        raise PrivacyReportError(f"update reports delta {report.delta:g}, the task's is {training.dp.delta:g}")
    if report.epsilon > training.dp.epsilon_budget:
        raise PrivacyReportError(
            f"update reports epsilon {report.epsilon:.3f}, past the task's budget {training.dp.epsilon_budget:g}"
        )
    return report
