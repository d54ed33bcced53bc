"""Torch models of the task: logistic regression, a one-hidden-layer MLP and a small CNN for square
grayscale images, with helpers to move between a model's state and one flat float64 vector (what
the outlier rules and aggregators use)."""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from fedmarket_schemas.market import ModelConfig, ModelKind


def build_model(config: ModelConfig, *, seed: int | None = None) -> nn.Module:
    if seed is not None:
        torch.manual_seed(seed)
    if config.kind == ModelKind.lr:
        return nn.Sequential(nn.Linear(config.in_features, config.classes))
    if config.kind == ModelKind.cnn:
        return _cnn(config)
    return nn.Sequential(
        nn.Linear(config.in_features, config.hidden),
        nn.ReLU(),
        nn.Linear(config.hidden, config.classes),
    )


def _cnn(config: ModelConfig) -> nn.Module:
    """Two 3x3 convolutions (8 and 16 channels, ReLU), a 2x2 max-pool and a linear head: 3,818
    parameters at 8x8 and 32,618 at 28x28 with 10 classes."""
    side = math.isqrt(config.in_features)  # ModelConfig allows a CNN only square images
    pooled = 16 * (side // 2) ** 2
    return nn.Sequential(
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(pooled, config.classes),
    )


State = "OrderedDict[str, torch.Tensor]"


def template(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes every update of this task must have."""
    return dict(_template(config.model_dump_json()))


@lru_cache(maxsize=32)
def _template(config_json: str) -> tuple:
    """Built once per task: building the module initialises every weight, which costs more than
    decoding an update of a 1M-parameter model."""
    model = build_model(ModelConfig.model_validate_json(config_json))
    return tuple((k, (tuple(v.shape), v.dtype)) for k, v in model.state_dict().items())


def state_to_vector(state: dict[str, torch.Tensor]) -> np.ndarray:
    return np.concatenate([t.detach().cpu().numpy().ravel().astype(np.float64) for t in state.values()])


def vector_to_state(vector: np.ndarray, config: ModelConfig) -> OrderedDict[str, torch.Tensor]:
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    offset = 0
    for name, (shape, dtype) in template(config).items():
        size = int(np.prod(shape))
        out[name] = torch.from_numpy(np.asarray(vector[offset : offset + size]).reshape(shape).copy()).to(dtype)
        offset += size
    if offset != len(vector):
        raise ValueError(f"vector has {len(vector)} values, the model has {offset}")
    return out


def parameter_count(config: ModelConfig) -> int:
    return sum(int(np.prod(shape)) for shape, _ in template(config).values())
