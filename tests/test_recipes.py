"""Every shipped recipe validates, and names only registered models, losses and datasets."""

from pathlib import Path

import pytest

from potstill import config
from potstill.cli.docs import render, render_losses
from potstill.data import DATASETS
from potstill.knowledge.wiring import build_terms
from potstill.models import MODELS
from potstill.recipe import Recipe

ROOT = Path(__file__).parents[1]
# sweep inputs, not recipes: named choices (--param KEY=@FILE) and published numbers (--published)
NOT_RECIPES = ("methods", "published.yaml")
RECIPES = sorted(path for path in (ROOT / "recipes").rglob("*.yaml")
                 if not any(part in NOT_RECIPES for part in path.relative_to(ROOT / "recipes").parts))


def test_there_are_recipes():
    assert len(RECIPES) >= 4


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_recipe_is_valid(path):
    recipe = config.load(path, Recipe)
    assert recipe.data.name in DATASETS
    DATASETS.check_kwargs(recipe.data.name, recipe.data.args)
    for spec, role in ((recipe.teacher.model if recipe.teacher else None, "teacher"), (recipe.student, "student")):
        if spec is not None:
            MODELS.check_kwargs(spec.name, spec.args, where=f"{role}.args")
    build_terms(recipe.distill, recipe.train.epochs)  # every term's loss, arguments and pairs


def test_recipe_reference_is_current():
    assert (ROOT / "docs" / "recipes.md").read_text() == render(), "run `make docs` to regenerate docs/recipes.md"


def test_loss_reference_is_current():
    assert (ROOT / "docs" / "losses.md").read_text() == render_losses(), "run `make docs` to regenerate docs/losses.md"
