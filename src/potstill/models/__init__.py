"""The model registry: teachers and students built by name.

    from potstill.models import create_model
    teacher = create_model("resnet32x4", input_shape=(3, 32, 32), num_classes=100)

Every builder has the same interface, `builder(input_shape, num_classes, **typed_keywords)`, takes
(B, C, H, W) float input and returns (B, num_classes) logits. Its signature is its config, and its
docstring's first line is what `potstill list models` shows. Submodules register themselves when
they are imported at the bottom of this file.

`create_model` first builds the model on the meta device (shapes only, no memory) and refuses,
in one line naming the arguments, a model too large to train in this machine's memory, so that
`hidden: [100000000]` is an error and not an allocation that swaps or is killed.
"""

from __future__ import annotations

import itertools
import os
import reprlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from potstill.config.describe import short_yaml_words
from potstill.errors import PotstillError
from potstill.registry import Registry

MODELS = Registry("model")
TRAINING_COPIES = 4  # training holds each weight 4 times: the weight, its gradient and Adam's two moments
GIB = 2**30


def create_model(name: str, *, input_shape: Sequence[int], num_classes: int, seed: int | None = None,
                 **kwargs: Any) -> nn.Module:
    """Build the registered model `name` for inputs of `input_shape` (C, H, W); a PotstillError
    when it could not be trained in this machine's memory. With `seed`, the initial weights are
    drawn from that seed and the caller's random state is left as it was."""
    # recipes give lists; builders get a tuple. Anything else reaches the builder's own check.
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else input_shape
    arguments = {"input_shape": shape, "num_classes": num_classes, **kwargs}
    check_model_size(name, arguments)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise PotstillError(f"create_model: seed must be an integer, got {seed!r}")
    try:
        if seed is None:
            return MODELS.create(name, **arguments)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return MODELS.create(name, **arguments)
    except (MemoryError, RuntimeError) as error:  # memory ran out all the same (other processes, a GPU)
        if not _is_allocation_error(error):
            raise
        raise PotstillError(f"{_model_words(name, kwargs)}: not enough memory to build it ({_first_line(error)}); make it smaller") from None


def check_model_size(name: str, arguments: dict[str, Any]) -> None:
    """Refuse a model whose weights, gradients and optimizer state would not fit in memory,
    measured on the meta device before anything is allocated."""
    size = model_bytes(name, arguments)
    memory = memory_bytes()
    if size is None or memory is None or size * TRAINING_COPIES <= memory:
        return
    kwargs = {key: value for key, value in arguments.items() if key not in ("input_shape", "num_classes")}
    raise PotstillError(
        f"{_model_words(name, kwargs)} is too large: {size / GIB:.1f} GiB of weights need about "
        f"{size * TRAINING_COPIES / GIB:.0f} GiB to train (weights, gradients, Adam state), "
        f"more than this machine's {memory / GIB:.1f} GiB of memory; make it smaller"
    )


def model_bytes(name: str, arguments: dict[str, Any]) -> int | None:
    """Bytes of the parameters and buffers of the model, built on the meta device (shapes, no
    memory); None when its builder cannot run there (its real build is then still guarded)."""
    try:
        with torch.device("meta"):
            model = MODELS.create(name, **arguments)
    except PotstillError:
        raise
    except (MemoryError, RuntimeError, OverflowError, ValueError) as error:
        if _is_allocation_error(error):  # sizes whose product overflows 64 bits
            kwargs = {key: value for key, value in arguments.items() if key not in ("input_shape", "num_classes")}
            raise PotstillError(f"{_model_words(name, kwargs)} is too large to build ({_first_line(error)}); make it smaller") from None
        return None
    tensors = itertools.chain(model.parameters(), model.buffers())
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def memory_bytes() -> int | None:
    """This machine's memory, or its container's limit when lower; None where unknown."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None
    try:  # cgroup v2: "max" or a byte count
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return memory
    return min(memory, int(limit)) if limit.isdigit() else memory


def _is_allocation_error(error: BaseException) -> bool:
    text = str(error).lower()
    words = ("out of memory", "can't allocate memory", "cannot allocate memory", "overflow")
    return isinstance(error, MemoryError) or any(word in text for word in words)


def _model_words(name: str, kwargs: dict[str, Any]) -> str:
    """"model 'mlp' with {hidden: [100000000]}" for messages."""
    return f"model '{name}' with {short_yaml_words(kwargs, limit=200)}" if kwargs else f"model '{name}'"


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def model_modality(name: str) -> str:
    """image (input (C, H, W)) or text (token ids (L,)): what data a registered model takes."""
    return getattr(MODELS.get(name), "modality", "image")


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) in `model`."""
    return sum(parameter.numel() for parameter in model.parameters())


# ---- argument checks shared by the builders: one wording for every model ----------------------


_SHOWN = reprlib.Repr()
_SHOWN.maxlist = _SHOWN.maxtuple = 8  # a value from a recipe may be a list of 100,000 items
_SHOWN.maxstring = _SHOWN.maxother = 60


def _shown(value: object) -> str:
    """repr() of a value for a message, cut when long: [0, 0, 0, 0, 0, 0, 0, 0, ...]."""
    return _SHOWN.repr(value)


def _is_int(value: object) -> bool:
    # bool is an int subclass, but `hidden: [True]` is certainly a mistake
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(model: str, name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise PotstillError(
            f"model '{model}': {name} must be a positive integer, got {_shown(value)}; "
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
            f"got {_shown(input_shape)}; e.g. input_shape: [1, 28, 28] for MNIST or [3, 32, 32] for CIFAR"
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
        raise PotstillError(f"model '{model}': {name} must be {wanted}, got {_shown(values)}; e.g. {name}: {example}")
    return list(values)


def check_dropout(model: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise PotstillError(
            f"model '{model}': {name} is a drop probability and must be in [0, 1), got {_shown(value)}; "
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
            f"model '{model}': depth must be 6n + {offset} with n >= 1 ({examples}, ...), got {_shown(depth)}; "
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
from potstill.models import cnn, gguf, hf, hf_lm, mlp, resnet_cifar, wrn  # noqa: F401

__all__ = ["MODELS", "count_parameters", "create_model", "model_modality"]
