"""Torch models of the task: logistic regression, a one-hidden-layer MLP, a small CNN for square
grayscale images, or the owner's own `torch.nn.Module` by import path, with helpers to move
between a model's state and one flat float64 vector (what the outlier rules and aggregators use).

An owner's module is code each party installs itself; fedmarket only imports it. The task pins
its architecture by the sha256 of its ONNX export without weight values (`pin_architecture`), so
every trainer trains, and the aggregator averages, the same network, and the task's CID pins it."""

from __future__ import annotations

import hashlib
import importlib
import io
import math
from collections import OrderedDict
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from fedmarket.errors import ConfigError
from fedmarket_schemas.market import ModelConfig, ModelKind


def build_model(config: ModelConfig, *, seed: int | None = None) -> nn.Module:
    if config.kind == ModelKind.module:
        _check_architecture(config.model_dump_json())  # before seeding: it builds a module of its own
    if seed is not None:
        torch.manual_seed(seed)
    if config.kind == ModelKind.module:
        return _user_module(config)
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


def _user_module(config: ModelConfig) -> nn.Module:
    path, _, name = config.module.partition(":")
    try:
        cls = getattr(importlib.import_module(path), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"the task's module {config.module} cannot be imported here: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"the task's module {config.module} is not a torch.nn.Module class")
    try:
        return cls(config.in_features, config.classes)
    except Exception as exc:  # noqa: BLE001 - the owner's code: whatever it raises, name it
        raise ConfigError(f"{config.module}({config.in_features}, {config.classes}) failed: {exc}") from None


def architecture_of(config: ModelConfig) -> str:
    """sha256 of the module's ONNX export with every weight value, name of its producer and doc
    string removed: what the network computes, not how it was initialised or by which torch."""
    import onnx

    with torch.random.fork_rng():
        net = _user_module(config).eval()
    buffer = io.BytesIO()
    try:
        torch.onnx.export(net, (torch.zeros(1, config.in_features),), buffer, opset_version=17, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - the exporter's errors have no common root
        raise ConfigError(f"the task's module {config.module} cannot be exported to ONNX: {exc}") from None
    graph = onnx.load_from_string(buffer.getvalue())
    graph.producer_name = graph.producer_version = graph.doc_string = graph.graph.doc_string = ""
    for tensor in graph.graph.initializer:
        for field in ("raw_data", "float_data", "double_data", "int32_data", "int64_data"):
            tensor.ClearField(field)
    for node in graph.graph.node:
        node.doc_string = ""
    return hashlib.sha256(graph.SerializeToString(deterministic=True)).hexdigest()


def pin_architecture(config: ModelConfig) -> ModelConfig:
    """The task's model with its module's architecture hash (other kinds unchanged)."""
    if config.kind != ModelKind.module:
        return config
    return config.model_copy(update={"architecture": architecture_of(config)})


@lru_cache(maxsize=32)
def _check_architecture(config_json: str) -> None:
    """Once per task and process: the installed module is the one the task pinned."""
    config = ModelConfig.model_validate_json(config_json)
    if config.architecture is None:
        raise ConfigError(
            f"the task's module {config.module} has no pinned architecture (fedmarket pins it at creation)"
        )
    found = architecture_of(config)
    if found != config.architecture:
        raise ConfigError(
            f"the installed {config.module} is not the task's: its architecture hashes to {found[:16]}..., "
            f"the task pins {config.architecture[:16]}..."
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
