"""Issue 11, model size: `create_model` measures a model on the meta device before allocating it and
refuses, in one line naming its arguments, one that could not be trained in this machine's memory.
"""

from __future__ import annotations

import time

import pytest
import torch

from potstill import models
from potstill.errors import PotstillError
from potstill.models import MODELS, create_model, model_bytes, model_modality

HUGE = [2**40]  # a hidden width whose weights alone would take 256 TiB: too large on any machine

IMAGE_MODELS = [name for name in MODELS.names() if model_modality(name) == "image"]  # text models: tests/models/test_hf.py


def tensor_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_model_builds_on_the_meta_device_at_its_real_size(name: str) -> None:
    """Catches: a builder the meta-device estimate cannot run (the size check would then be
    skipped for it) or an estimate that differs from the real model."""
    arguments = {"input_shape": (3, 32, 32), "num_classes": 10}
    estimate = model_bytes(name, arguments)
    assert estimate == tensor_bytes(MODELS.create(name, **arguments)) > 0


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet8", "wrn_16_1"])
def test_the_size_check_leaves_the_initial_weights_unchanged(name: str) -> None:
    """Guards the meta build: were it to draw from the global RNG, every seeded model would start
    from other weights than before (and than `MODELS.create` gives)."""
    torch.manual_seed(0)
    direct = MODELS.create(name, input_shape=(3, 32, 32), num_classes=10).state_dict()
    torch.manual_seed(0)
    checked = create_model(name, input_shape=(3, 32, 32), num_classes=10).state_dict()
    assert all(torch.equal(direct[key], checked[key]) for key in direct)


def test_a_model_too_large_for_memory_is_refused_before_allocating() -> None:
    """Catches: `student.args.hidden: [100000000]` started allocating tens of GiB (swap, the OOM
    killer, or a traceback) instead of one line naming the argument."""
    start = time.monotonic()
    with pytest.raises(PotstillError) as caught:
        create_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=HUGE)
    message = str(caught.value)
    assert message.startswith(f"model 'mlp' with {{hidden: [{HUGE[0]}]}} is too large: ") and "\n" not in message
    assert "GiB to train (weights, gradients, Adam state)" in message
    assert time.monotonic() - start < 5


def test_the_limit_follows_the_memory_of_the_machine(monkeypatch) -> None:
    """Catches: a fixed limit instead of one from this machine's memory (4 copies of the weights)."""
    size = model_bytes("mlp", {"input_shape": (1, 8, 8), "num_classes": 10, "hidden": [64]})
    monkeypatch.setattr(models, "memory_bytes", lambda: size * 4)
    create_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[64])
    monkeypatch.setattr(models, "memory_bytes", lambda: size * 4 - 1)
    with pytest.raises(PotstillError, match="is too large"):
        create_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[64])


def test_sizes_that_overflow_are_one_line() -> None:
    """Catches: widths whose product overflows 64 bits raised torch's 'Storage size calculation
    overflowed' RuntimeError (a traceback)."""
    with pytest.raises(
        PotstillError,
        match=r"^model 'mlp' with \{hidden: \[4611686018427387904\]\} is too large to build \(Storage size",
    ):
        create_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[2**62])


def test_running_out_of_memory_while_building_is_one_line(monkeypatch) -> None:
    """Catches: an allocation failure during the real build (memory taken by others, a GPU) ended
    in a RuntimeError traceback."""

    def greedy(input_shape, num_classes, width: int = 4):
        layer = torch.nn.Linear(width, num_classes)
        if layer.weight.device.type != "meta":
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried ..."
            )
        return layer

    monkeypatch.setitem(MODELS._entries, "greedy", greedy)
    with pytest.raises(
        PotstillError, match=r"^model 'greedy' with \{width: 8\}: not enough memory to build it \(\[enforce fail"
    ):
        create_model("greedy", input_shape=(1, 8, 8), num_classes=10, width=8)


def test_other_errors_of_a_builder_are_not_hidden(monkeypatch) -> None:
    """Guards the memory handling: a bug in a builder still raises as itself, with its traceback."""

    def broken(input_shape, num_classes):
        raise RuntimeError("a bug")

    monkeypatch.setitem(MODELS._entries, "broken", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        create_model("broken", input_shape=(1, 8, 8), num_classes=10)


def test_a_bad_argument_is_still_reported_by_the_builder() -> None:
    """Guards the meta build: the builder's own one-line checks reach the user unchanged."""
    with pytest.raises(PotstillError, match="hidden must be a non-empty list of positive integers"):
        create_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[0])
