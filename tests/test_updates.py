from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save

from fedmarket.errors import MalformedUpdateError, NonFiniteUpdateError
from fedmarket.ml.models import parameter_count
from fedmarket.ml.updates import decode_update, encode_update
from fedmarket_schemas.market import ModelConfig, ModelKind

LR = ModelConfig()
MLP = ModelConfig(kind=ModelKind.mlp, hidden=8)


@pytest.mark.parametrize("model", [LR, MLP])
def test_round_trip(model):
    vector = np.random.default_rng(0).normal(size=parameter_count(model)).astype(np.float32).astype(np.float64)
    assert np.array_equal(decode_update(encode_update(vector, model), model), vector)


def test_counts():
    assert parameter_count(LR) == 64 * 10 + 10
    assert parameter_count(MLP) == 64 * 8 + 8 + 8 * 10 + 10


def test_wrong_shape():
    bad = save({"0.weight": torch.zeros(10, 63), "0.bias": torch.zeros(10)})
    with pytest.raises(MalformedUpdateError, match=r"0.weight has shape \(10, 63\)"):
        decode_update(bad, LR)


def test_wrong_dtype():
    bad = save({"0.weight": torch.zeros(10, 64, dtype=torch.float64), "0.bias": torch.zeros(10)})
    with pytest.raises(MalformedUpdateError, match="dtype"):
        decode_update(bad, LR)


def test_wrong_names():
    with pytest.raises(MalformedUpdateError, match="do not match"):
        decode_update(save({"w": torch.zeros(10, 64)}), LR)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite(value):
    weight = torch.zeros(10, 64)
    weight[3, 5] = value
    with pytest.raises(NonFiniteUpdateError, match="1 NaN or infinite"):
        decode_update(save({"0.weight": weight, "0.bias": torch.zeros(10)}), LR)


def test_garbage_bytes():
    with pytest.raises(MalformedUpdateError, match="not a safetensors"):
        decode_update(b"\x00garbage", LR)
