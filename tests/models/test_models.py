"""Every registered model builds, runs forward and backward, and matches the literature's size."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from potstill.errors import PotstillError
from potstill.models import MODELS, count_parameters, create_model, model_modality

INPUT_SHAPES = [(1, 28, 28), (3, 32, 32)]  # MNIST-like and CIFAR-like

IMAGE_MODELS = [name for name in MODELS.names() if model_modality(name) == "image"]  # text models: tests/models/test_hf.py


@pytest.mark.parametrize("input_shape", INPUT_SHAPES, ids=lambda shape: "x".join(map(str, shape)))
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_forward_backward_eval(name: str, input_shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = create_model(name, input_shape=input_shape, num_classes=7)
    images = torch.randn(2, *input_shape)  # (B, C, H, W); batch 2 so BatchNorm can train
    labels = torch.tensor([0, 6])

    logits = model(images)  # (B, num_classes)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()

    F.cross_entropy(logits, labels).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name}: no gradient reached {parameter_name}"
        assert torch.isfinite(parameter.grad).all(), f"{name}: non-finite gradient in {parameter_name}"

    model.eval()
    with torch.no_grad():
        eval_logits = model(images[:1])  # eval mode must also work on a single sample
    assert eval_logits.shape == (1, 7)
    assert torch.isfinite(eval_logits).all()


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_builder_interface(name: str) -> None:
    # `potstill list models` shows the first docstring line; recipes set the typed keywords
    assert MODELS.describe(name)
    parameters = list(MODELS.parameters(name).values())
    assert [p.name for p in parameters[:2]] == ["input_shape", "num_classes"]
    for parameter in parameters[2:]:
        assert parameter.annotation is not inspect.Parameter.empty, f"{name}.{parameter.name} has no type"
        assert parameter.default is not inspect.Parameter.empty, f"{name}.{parameter.name} has no default"


# Sizes at 100 classes on 3x32x32 as reported by CRD (Tian et al., ICLR 2020) and WRN papers.
LITERATURE_PARAMETERS = {
    "resnet20": 0.28e6,
    "resnet56": 0.86e6,
    "resnet110": 1.73e6,
    "resnet8x4": 1.23e6,
    "resnet32x4": 7.43e6,
    "wrn_16_2": 0.70e6,
    "wrn_40_2": 2.26e6,
}


@pytest.mark.parametrize("name", LITERATURE_PARAMETERS)
def test_parameter_count_matches_literature(name: str) -> None:
    model = create_model(name, input_shape=(3, 32, 32), num_classes=100)
    assert count_parameters(model) == pytest.approx(LITERATURE_PARAMETERS[name], rel=0.02)


def test_cnn_is_the_fashion_mnist_teacher() -> None:
    model = create_model("cnn", input_shape=(1, 28, 28), num_classes=10)
    assert model.fc1.in_features == 64 * 7 * 7 == 3136
    expected = (
        (1 * 32 * 9 + 32) + 2 * 32  # block1: conv3x3 with bias, BatchNorm scale and shift
        + (32 * 64 * 9 + 64) + 2 * 64  # block2
        + (3136 * 256 + 256)  # fc1
        + (256 * 10 + 10)  # classifier
    )
    assert count_parameters(model) == expected


def test_mlp_parameter_count() -> None:
    model = create_model("mlp", input_shape=(1, 28, 28), num_classes=10)
    expected = (784 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 10 + 10)
    assert count_parameters(model) == expected


@pytest.mark.parametrize(
    ("name", "module_names"),
    [
        ("mlp", ["hidden1", "hidden1.linear", "hidden2", "classifier"]),
        ("cnn", ["block1", "block1.conv", "block2", "fc1", "classifier"]),
        ("resnet8x4", ["conv1", "bn1", "layer1", "layer2", "layer3", "fc"]),
        ("wrn_16_2", ["conv1", "block1", "block2", "block3", "bn", "fc"]),
    ],
)
def test_modules_have_tappable_names(name: str, module_names: list[str]) -> None:
    model = create_model(name, input_shape=(3, 32, 32), num_classes=10)
    assert set(module_names) <= dict(model.named_modules()).keys()


def test_default_list_arguments_are_not_mutated() -> None:
    default = MODELS.parameters("mlp")["hidden"].default
    create_model("mlp", input_shape=(1, 8, 8), num_classes=3)
    assert default == [1024, 1024]


@pytest.mark.parametrize(
    ("name", "kwargs", "named_in_message"),
    [
        ("mlp", {"hidden": []}, "hidden"),
        ("mlp", {"hidden": [64, 0]}, "hidden"),
        ("mlp", {"dropout": -0.1}, "dropout"),
        ("cnn", {"dropout": 1.0}, "dropout"),
        ("cnn", {"hidden": 0}, "hidden"),
        ("cnn", {"channels": [8] * 6}, "channels"),  # 28 -> 14 -> 7 -> 3 -> 1, then nothing to pool
        ("small_cnn", {"channels": "32"}, "channels"),
        ("resnet", {"depth": 21}, "depth: 20 or 26"),
        ("resnet", {"depth": 2}, "depth"),
        ("resnet", {"widths": [16, 32, 64]}, "widths"),
        ("wrn", {"depth": 20}, "depth: 16 or 22"),
        ("wrn", {"widen_factor": 0}, "widen_factor"),
        ("wrn_40_2", {"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_arguments_name_the_argument(name: str, kwargs: dict, named_in_message: str) -> None:
    with pytest.raises(PotstillError, match=named_in_message):
        create_model(name, input_shape=(1, 28, 28), num_classes=10, **kwargs)


@pytest.mark.parametrize("input_shape", [(28, 28), (1, 0, 28), 28])
def test_bad_input_shape(input_shape: object) -> None:
    with pytest.raises(PotstillError, match="input_shape"):
        create_model("resnet20", input_shape=input_shape, num_classes=10)  # type: ignore[arg-type]


def test_bad_num_classes() -> None:
    with pytest.raises(PotstillError, match="num_classes"):
        create_model("mlp", input_shape=(1, 28, 28), num_classes=0)


def test_misspelt_model_suggests_the_registered_name() -> None:
    with pytest.raises(PotstillError, match="did you mean 'resnet8x4'"):
        create_model("resnet_8x4", input_shape=(3, 32, 32), num_classes=100)


def test_unknown_keyword_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(PotstillError, match="did you mean 'hidden'"):
        create_model("mlp", input_shape=(1, 28, 28), num_classes=10, hiden=[64])
    with pytest.raises(PotstillError, match="depth"):  # fixed variants do not take a depth
        create_model("resnet20", input_shape=(3, 32, 32), num_classes=10, depth=32)


def test_create_model_seed_draws_the_same_weights_and_leaves_the_callers_random_state():
    """Catches: a seed that is ignored (weights differ), or one that reseeds the caller's stream."""
    def weights(model):
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = create_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=[8], seed=7)
    after = torch.rand(3)
    second = create_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=[8], seed=7)
    other = create_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=[8], seed=8)
    assert torch.equal(before, after)
    assert torch.equal(weights(first), weights(second)) and not torch.equal(weights(first), weights(other))
    with pytest.raises(PotstillError, match="seed must be an integer, got '7'"):
        create_model("mlp", input_shape=(1, 4, 4), num_classes=3, seed="7")
