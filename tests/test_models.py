"""The task's models beyond LR and MLP: the small CNN for square grayscale images, an owner's own
torch.nn.Module by import path pinned by its architecture, and the final model exported as ONNX
(input scaling in front) checked with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from fedmarket.errors import ConfigError, ProtocolError, ZKError
from fedmarket.ml.data import load_digits_dataset, owner_split
from fedmarket.ml.export import check_onnx, to_onnx
from fedmarket.ml.models import build_model, parameter_count, pin_architecture
from fedmarket.ml.training import accuracy, initial_model, train_local
from fedmarket.zk.settlement_proof import settlement_circuit
from fedmarket_flows.demo import DemoConfig, demo_flow
from fedmarket_schemas.market import DataSchema, ModelConfig, ModelKind, TaskSpec, model_choice

CNN = ModelConfig(kind=ModelKind.cnn)
USER = ModelConfig(kind=ModelKind.module, module="tests.user_models:WideAndDeep")


def test_the_cnn_has_the_documented_size_at_8x8_and_28x28():
    # conv 1->8 (80) + conv 8->16 (1,168) + linear from 16 x (side/2)^2 to 10 classes
    assert parameter_count(CNN) == 80 + 1_168 + 16 * 4 * 4 * 10 + 10
    mnist = ModelConfig(kind=ModelKind.cnn, in_features=784, input_max=255.0)
    assert parameter_count(mnist) == 80 + 1_168 + 16 * 14 * 14 * 10 + 10


def test_a_cnn_needs_square_images():
    with pytest.raises(ValueError, match="square images"):
        TaskSpec.for_data(DataSchema(feature_count=30, labels=(0, 1)), ModelKind.cnn)


def test_the_cnn_learns_digits():
    pool, test = owner_split(load_digits_dataset(), owner_fraction=0.3, seed=0)
    task = TaskSpec.for_data(DataSchema(), ModelKind.cnn)
    # the CNN's own batch size (TrainingConfig.for_model), the other models' default
    assert task.training.batch_size == 8 and TaskSpec.for_data(DataSchema(), ModelKind.lr).training.batch_size == 16
    start = initial_model(task.model, seed=0)
    trained = train_local(start, pool, task.model, task.training, seed=0)
    assert accuracy(start, test, task.model) < 0.3 < 0.95 <= accuracy(trained, test, task.model)


def test_no_settlement_circuit_is_claimed_for_a_cnn():
    with pytest.raises(ZKError, match="a cnn market settles unproven"):
        settlement_circuit(4, CNN, 10)


@pytest.mark.parametrize("kind", list(ModelKind))
def test_the_onnx_export_predicts_as_torch_on_raw_features(kind):
    model = pin_architecture(USER) if kind == ModelKind.module else ModelConfig(kind=kind, hidden=8)
    vector = np.random.default_rng(1).normal(0, 1.0, parameter_count(model))
    raw = load_digits_dataset().features[:50]
    predicted = check_onnx(to_onnx(vector, model), vector, model, raw)
    assert predicted.shape == (50,) and len(set(predicted.tolist())) > 1


def test_an_onnx_file_of_another_model_is_caught():
    vector = np.random.default_rng(2).normal(0, 0.3, parameter_count(CNN))
    other = vector + np.random.default_rng(3).normal(0, 1.0, vector.shape)
    with pytest.raises(ProtocolError, match="predicts .* rows unlike torch"):
        check_onnx(to_onnx(other, CNN), vector, CNN, load_digits_dataset().features[:100])


def test_a_user_module_is_pinned_by_its_architecture_not_its_weights():
    pinned = pin_architecture(USER)
    assert len(pinned.architecture) == 64 and pin_architecture(USER) == pinned  # the same, built twice
    assert parameter_count(pinned) == 64 * 10 + 10 + 64 * 16 + 16 + 16 * 10 + 10
    assert not np.array_equal(initial_model(pinned, seed=1), initial_model(pinned, seed=2))
    np.testing.assert_array_equal(initial_model(pinned, seed=1), initial_model(pinned, seed=1))
    wider = USER.model_copy(update={"module": "tests.user_models:WiderAndDeep"})
    assert pin_architecture(wider).architecture != pinned.architecture
    impostor = wider.model_copy(update={"architecture": pinned.architecture})
    with pytest.raises(ConfigError, match="WiderAndDeep is not the task's"):
        build_model(impostor)
    with pytest.raises(ConfigError, match="no pinned architecture"):
        build_model(USER)
    for path, named in [("tests.user_models:Missing", "cannot be imported"), ("tests.nowhere:X", "cannot be imported")]:
        with pytest.raises(ConfigError, match=named):
            pin_architecture(USER.model_copy(update={"module": path}))
    with pytest.raises(ConfigError, match="not a torch.nn.Module"):
        pin_architecture(USER.model_copy(update={"module": "tests.user_models:NotAModule"}))


def test_a_user_module_is_named_by_import_path():
    assert model_choice("module:tests.user_models:WideAndDeep") == (ModelKind.module, "tests.user_models:WideAndDeep")
    assert model_choice("cnn") == (ModelKind.cnn, None)
    for bad in ("module:tests.user_models", "module:1x:Y", "resnet"):
        with pytest.raises(ValueError, match=repr(bad)):
            model_choice(bad)
    with pytest.raises(ValueError, match="names its module"):
        ModelConfig(kind=ModelKind.module)
    with pytest.raises(ValueError, match="names its module"):
        ModelConfig(kind=ModelKind.lr, module="tests.user_models:WideAndDeep")


def test_a_user_module_trains_in_a_market_of_three(platform):
    report = demo_flow(DemoConfig(trainers=3, malicious=0, rounds=2, model=ModelKind.module, module=USER.module))
    market = platform.market(report.market)
    task = TaskSpec.model_validate_json(platform.store.get(market.spec_cid()))
    assert task.model.module == USER.module and task.model.architecture == pin_architecture(USER).architecture
    assert market.phase() == "Settled" and report.final_accuracy >= 0.85
    assert all(r.flagged == [] for r in report.rounds)
