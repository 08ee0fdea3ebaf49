"""The model registry: teachers and students built by name.

    from potstill.models import create_model
    teacher = create_model("resnet32x4", input_shape=(3, 32, 32), num_classes=100)

Every builder has the same interface, `builder(input_shape, num_classes, **typed_keywords)`, takes
(B, C, H, W) float input and returns (B, num_classes) logits. Its signature is its config, and its
docstring's first line is what `potstill list models` shows. Submodules register themselves when
they are imported at the bottom of this file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from potstill.errors import PotstillError
from potstill.registry import Registry

MODELS = Registry("model")


def create_model(name: str, *, input_shape: Sequence[int], num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the registered model `name` for inputs of `input_shape` (C, H, W)."""
    # recipes give lists; builders get a tuple. Anything else reaches the builder's own check.
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else input_shape
    return MODELS.create(name, input_shape=shape, num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) in `model`."""
    return sum(parameter.numel() for parameter in model.parameters())


# ---- argument checks shared by the builders: one wording for every model ----------------------


def _is_int(value: object) -> bool:
    # bool is an int subclass, but `hidden: [True]` is certainly a mistake
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(model: str, name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise PotstillError(
            f"model '{model}': {name} must be a positive integer, got {value!r}; "
            f"set {name} to a whole number of at least 1"
        )
    return value


def check_shape(model: str, input_shape: Any, num_classes: Any) -> tuple[int, int, int]:
    """Validate the two arguments every builder takes; returns input_shape as (C, H, W)."""
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3 or not all(
        _is_int(size) and size >= 1 for size in input_shape
    ):
        raise PotstillError(
            f"model '{model}': input_shape must be three positive integers (channels, height, width), "
            f"got {input_shape!r}; e.g. input_shape: [1, 28, 28] for MNIST or [3, 32, 32] for CIFAR"
        )
    check_positive_int(model, "num_classes", num_classes)
    return (input_shape[0], input_shape[1], input_shape[2])


def check_int_list(
    model: str, name: str, values: Any, length: int | None = None, example: list[int] | None = None
) -> list[int]:
    """A non-empty list of positive integers, of exactly `length` entries when given."""
    example = example or [64] * (length or 2)
    if (
        not isinstance(values, (list, tuple))
        or not values
        or (length is not None and len(values) != length)
        or not all(_is_int(value) and value >= 1 for value in values)
    ):
        wanted = f"{length} positive integers" if length else "a non-empty list of positive integers"
        raise PotstillError(f"model '{model}': {name} must be {wanted}, got {values!r}; e.g. {name}: {example}")
    return list(values)


def check_dropout(model: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise PotstillError(
            f"model '{model}': {name} is a drop probability and must be in [0, 1), got {value!r}; "
            f"use {name}: 0.0 to turn dropout off"
        )
    return float(value)


def check_depth(model: str, depth: Any, offset: int, examples: str) -> int:
    """A residual-net depth of the form 6n + offset with n >= 1 (three stages of n blocks)."""
    if not _is_int(depth) or depth < 6 + offset or (depth - offset) % 6:
        # suggest the valid depths either side of the one asked for
        lower = 6 + offset
        if _is_int(depth):
            lower = max(lower, (depth - offset) // 6 * 6 + offset)
        raise PotstillError(
            f"model '{model}': depth must be 6n + {offset} with n >= 1 ({examples}, ...), got {depth!r}; "
            f"try depth: {lower} or {lower + 6}"
        )
    return depth


def kaiming_init(model: nn.Module) -> None:
    """He-normal convolutions and unit BatchNorm, as the CIFAR ResNet and WRN papers train them."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


# Imported last, for their registration side effect: they need MODELS and the checks above.
from potstill.models import cnn, mlp, resnet_cifar, wrn  # noqa: F401

__all__ = ["MODELS", "count_parameters", "create_model"]
