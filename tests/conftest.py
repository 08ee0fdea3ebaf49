"""Shared fixtures: tiny recipes on synthetic data, and the real-data switch.

POTSTILL_REQUIRE_DATA=1 (set by CI) turns a missing Fashion-MNIST into a failure instead of a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from potstill.engine.progress import Reporter

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def fashion_mnist_root() -> Path:
    if not (FMNIST / "train-images-idx3-ubyte.gz").is_file():
        message = f"Fashion-MNIST not installed at {FMNIST} (apt-get install dataset-fashion-mnist)"
        if os.environ.get("POTSTILL_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return FMNIST


def pytest_collection_modifyitems(items):
    """The docs test's results are collected last: its files are read in the background from the start
    (docs_read_in_background), so the rest of the suite runs meanwhile instead of waiting for them."""
    waiting = [item for item in items if getattr(item, "originalname", "") == "test_every_block_runs_as_written"]
    items[:] = [item for item in items if item not in waiting] + waiting


@pytest.fixture(scope="session", autouse=True)
def docs_read_in_background(request, tmp_path_factory):
    """The docs test (tests/docs/test_snippets.py) runs each markdown file's commands in subprocesses;
    they start with the session and overlap with the other tests instead of running last."""
    from tests.docs.test_snippets import start_reading

    pool = start_reading(request.session, tmp_path_factory)
    if pool is not None:
        # the docs' commands take the other core(s); OpenMP threads of this process spinning beside
        # them would slow both sides several-fold (measured: a 20-minute suite instead of ~10)
        torch.set_num_threads(1)
    yield
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def tiny_recipe(**changes) -> dict:
    """A distil recipe that runs in about a second: synthetic 8x8 data, small CNN -> MLP."""
    recipe = {
        "name": "tiny",
        "seed": 0,
        "data": {"name": "synthetic", "args": {"num_samples": 400}, "batch_size": 32, "hflip": True},
        "teacher": {
            "model": {"name": "small_cnn", "args": {"channels": [8], "hidden": 16}},
            "train": {"epochs": 2, "lr": 0.01},
        },
        "student": {"name": "mlp", "args": {"hidden": [16]}},
        "train": {"epochs": 3, "lr": 0.01},
        # untrained and two-epoch teachers on noise: the teacher check would (rightly) refuse many
        "distill": {"temperature": 4.0, "alpha": 0.5, "beta": 0.5, "teacher_check": "warn"},
        "report": {"latency_repeats": 1, "latency_batch_size": 8},
    }
    return with_changes(recipe, changes)


def with_changes(recipe: dict, changes: dict) -> dict:
    """`section__key=value` keyword changes applied to a recipe dict (nested sections created)."""
    for dotted, value in changes.items():
        node = recipe
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return recipe


def write_recipe(folder: Path, recipe: dict, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(recipe))
    return path


class Recorder(Reporter):
    """A quiet reporter that keeps its messages, for tests that check what a command said."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)
