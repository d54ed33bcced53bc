"""The one serialised form of a model update: safetensors (a JSON header of names, dtypes and
shapes, then raw little-endian tensors; no pickle, so opening an update runs no code).

fedmarket updates are float32 tensors named as the task model's `state_dict()`, with the header
metadata `{"format": "fedmarket.update.v1"}`. `decode_update` accepts an update only if every
name, shape and dtype matches the task model and every value is finite.
"""

from __future__ import annotations

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from fedmarket.errors import MalformedUpdateError, NonFiniteUpdateError, UpdateOutOfBoundsError
from fedmarket.ml.models import state_to_vector, template, vector_to_state
from fedmarket_schemas.market import ModelConfig, UpdateBounds

FORMAT = "fedmarket.update.v1"


def encode_update(vector: np.ndarray, model: ModelConfig) -> bytes:
    return st_save(dict(vector_to_state(vector, model)), metadata={"format": FORMAT})


def decode_update(data: bytes, model: ModelConfig, out: np.ndarray | None = None) -> np.ndarray:
    """Parse and check an update against the task model; return its flat float64 vector,
    written into `out` when given (a row of the round's matrix: no copy in between)."""
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise MalformedUpdateError(f"update is not a safetensors file: {exc}") from exc
    expected = template(model)
    if set(tensors) != set(expected):
        raise MalformedUpdateError(f"update tensors {sorted(tensors)} do not match the model's {sorted(expected)}")
    ordered = {}
    for name, (shape, dtype) in expected.items():
        tensor = tensors[name]
        if tuple(tensor.shape) != shape:
            raise MalformedUpdateError(f"tensor {name} has shape {tuple(tensor.shape)}, expected {shape}")
        if tensor.dtype != dtype:
            raise MalformedUpdateError(f"tensor {name} has dtype {tensor.dtype}, expected {dtype}")
        if not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise NonFiniteUpdateError(f"tensor {name} holds {bad} NaN or infinite values")
        ordered[name] = tensor
    if out is None:
        return state_to_vector(ordered)
    offset = 0
    for tensor in ordered.values():
        out[offset : offset + tensor.numel()] = tensor.numpy().ravel()
        offset += tensor.numel()
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
