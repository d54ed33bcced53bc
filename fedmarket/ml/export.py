"""The owner's model as ONNX: the task's network with its input scaling in front, so the file takes
the owner's raw feature columns, checked with onnxruntime against torch."""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

from fedmarket.errors import ProtocolError
from fedmarket.ml.data import scale_inputs
from fedmarket.ml.models import build_model, vector_to_state
from fedmarket_schemas.market import ModelConfig

OPSET = 17


class _Scaled(nn.Module):
    """(x - low) / (high - low), then the task's network: what training and evaluation compute."""

    def __init__(self, net: nn.Module, model: ModelConfig):
        super().__init__()
        self.net = net
        low = torch.tensor(np.broadcast_to(model.input_min, model.in_features), dtype=torch.float32)
        high = torch.tensor(np.broadcast_to(model.input_max, model.in_features), dtype=torch.float32)
        self.register_buffer("low", low)
        self.register_buffer("span", high - low)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.low) / self.span)


def model_module(vector: np.ndarray, model: ModelConfig) -> nn.Module:
    net = build_model(model)
    net.load_state_dict(vector_to_state(vector, model))
    return _Scaled(net, model).eval()


def to_onnx(vector: np.ndarray, model: ModelConfig) -> bytes:
    """ONNX bytes of the model: input `features` [batch, f] (raw), output `logits` [batch, c]."""
    module = model_module(vector, model)
    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        (torch.zeros(1, model.in_features),),
        buffer,
        input_names=["features"],
        output_names=["logits"],
        dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    return buffer.getvalue()


@torch.no_grad()
def check_onnx(onnx_bytes: bytes, vector: np.ndarray, model: ModelConfig, features: np.ndarray) -> np.ndarray:
    """onnxruntime's predictions on raw `features`; raises ProtocolError unless they are torch's."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    features = np.asarray(features, dtype=np.float32)
    (logits,) = session.run(["logits"], {"features": features})
    # torch as training and evaluation run it (scale_inputs, then the network), not the exported module
    net = build_model(model)
    net.load_state_dict(vector_to_state(vector, model))
    ours = net.eval()(torch.from_numpy(scale_inputs(features, model))).numpy()
    predicted = logits.argmax(axis=1)
    differ = int((predicted != ours.argmax(axis=1)).sum())
    if differ:
        raise ProtocolError(f"the ONNX model predicts {differ} of {len(features)} rows unlike torch")
    return predicted
