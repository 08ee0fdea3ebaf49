"""A tiny recipe, its workbench and teacher, and cache jobs built from them."""

from __future__ import annotations

from pathlib import Path

import torch

from potstill import config
from potstill.cache import make_job
from potstill.recipe import Recipe
from potstill.startup import build_model, open_workbench
from tests.conftest import tiny_recipe


def setup(**changes):
    """(recipe, workbench, teacher) for synthetic 8x8 data with flips and crops."""
    settings = {"data__crop_padding": 1, "distill__cache__enabled": True, "distill__cache__views": 3, "distill__cache__shard_size": 150} | changes
    recipe = config.validate(tiny_recipe(**settings), Recipe)
    bench = open_workbench(recipe)
    teacher = build_model(recipe.teacher.model, bench, "teacher", seed=0)
    return recipe, bench, teacher


def job(folder: Path, recipe, bench, teacher, taps=(), **cache):
    for key, value in cache.items():
        setattr(recipe.distill.cache, key, value)
    return make_job(recipe, bench, teacher, list(taps), folder)


def nudge(teacher: torch.nn.Module) -> None:
    with torch.no_grad():
        next(teacher.parameters()).add_(1e-3)
