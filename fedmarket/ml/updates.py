"""The one serialised form of a model update: safetensors (a JSON header of names, dtypes and
shapes, then raw little-endian tensors; no pickle, so opening an update runs no code).

fedmarket updates are float32 tensors named as the task model's `state_dict()`, with the header
metadata `{"format": "fedmarket.update.v1"}`. `decode_update` accepts an update only if every
name, shape and dtype matches the task model and every value is finite.
"""

from __future__ import annotations

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as np_load
from safetensors.torch import save as st_save

from fedmarket.errors import MalformedUpdateError, NonFiniteUpdateError, UpdateOutOfBoundsError
from fedmarket.ml.models import template, vector_to_state
from fedmarket_schemas.market import ModelConfig, UpdateBounds

FORMAT = "fedmarket.update.v1"


def encode_update(vector: np.ndarray, model: ModelConfig) -> bytes:
    return st_save(dict(vector_to_state(vector, model)), metadata={"format": FORMAT})


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


def check_bounds(vector: np.ndarray, start: np.ndarray, bounds: UpdateBounds) -> None:
    """Refuse a finite model outside the task's bounds (UpdateOutOfBoundsError, naming which)."""
    largest = float(np.max(np.abs(vector))) if vector.size else 0.0
    if largest > bounds.max_abs:
        raise UpdateOutOfBoundsError(f"an entry of magnitude {largest:.3g} is outside the task's +-{bounds.max_abs:g}")
    limit = bounds.max_norm_ratio * max(float(np.linalg.norm(start)), 1.0)
    moved = float(np.linalg.norm(vector - start))
    if moved > limit:
        raise UpdateOutOfBoundsError(
            f"the update's norm {moved:.3g} is over the task's {bounds.max_norm_ratio:g} x the start model's ({limit:.3g})"
        )
