"""Tiny recipes, one per registered scheme: synthetic 8x8 data, seconds per run."""

from __future__ import annotations

import copy

from tests.conftest import tiny_recipe

CNN_STUDENT = {"name": "small_cnn", "args": {"channels": [8, 16], "hidden": 16}}
PEER = {"name": "mlp", "args": {"hidden": [24]}}
TEACHER = {"model": {"name": "small_cnn", "args": {"channels": [8], "hidden": 16}}, "train": {"epochs": 2, "lr": 0.01}}
MLP_TEACHER = {"model": {"name": "mlp", "args": {"hidden": [32]}}, "train": {"epochs": 2, "lr": 0.01}}


def without_teacher(recipe: dict) -> dict:
    recipe.pop("teacher")
    return recipe


SCHEME_RECIPES = {
    "offline": lambda: tiny_recipe(),
    "online": lambda: without_teacher(tiny_recipe(
        scheme={"name": "online", "peers": [PEER]}, distill={"temperature": 1.0, "alpha": 1.0, "beta": 1.0})),
    "collaborative": lambda: without_teacher(tiny_recipe(
        scheme={"name": "collaborative", "peers": [PEER, PEER]}, distill={"temperature": 1.0, "alpha": 1.0, "beta": 1.0})),
    "byot": lambda: without_teacher(tiny_recipe(
        scheme={"name": "byot"}, student=CNN_STUDENT, distill={"temperature": 3.0, "alpha": 0.7, "beta": 0.3})),
    "born_again": lambda: tiny_recipe(scheme={"name": "born_again", "args": {"generations": 2}}),
    "snapshot": lambda: without_teacher(tiny_recipe(scheme={"name": "snapshot"})),
    "multi_teacher": lambda: without_teacher(tiny_recipe(
        scheme={"name": "multi_teacher", "args": {"combine": "confidence"}, "teachers": [TEACHER, MLP_TEACHER]})),
    "assistant": lambda: tiny_recipe(scheme={"name": "assistant", "assistants": [{"name": "mlp", "args": {"hidden": [32]}}]}),
    "bss": lambda: tiny_recipe(scheme={"name": "bss", "args": {"samples": 8, "iterations": 3}}),
    # data-free: a few synthetic batches per epoch, no labels (alpha 0)
    "dafl": lambda: tiny_recipe(scheme={"name": "dafl", "args": {"steps_per_epoch": 3, "width": 8}},
                                distill={"alpha": 0.0, "temperature": 1.0, "teacher_check": "warn"}),
    "dfad": lambda: tiny_recipe(scheme={"name": "dfad", "args": {"steps_per_epoch": 3, "width": 8}},
                                distill={"loss": "logit_l1", "alpha": 0.0, "teacher_check": "warn"}),
    "deep_inversion": lambda: tiny_recipe(scheme={"name": "deep_inversion", "args": {"steps_per_epoch": 2, "iterations": 3}},
                                          distill={"alpha": 0.0, "teacher_check": "warn"}),
    "cross_modal": lambda: tiny_recipe(
        scheme={"name": "cross_modal"}, data={"name": "digits_pair", "train_size": 240, "batch_size": 32, "hflip": True},
        teacher={**TEACHER, "model": {**TEACHER["model"], "input": "teacher_input"}}),
    "lwf": lambda: without_teacher(tiny_recipe(
        scheme={"name": "lwf", "args": {"num_tasks": 3, "replay_per_class": 2}},
        distill={"temperature": 2.0, "alpha": 1.0, "beta": 0.25})),
}


def scheme_recipe(name: str, **changes) -> dict:
    recipe = SCHEME_RECIPES[name]()
    for dotted, value in changes.items():
        node = recipe
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = copy.deepcopy(value)
    return recipe
