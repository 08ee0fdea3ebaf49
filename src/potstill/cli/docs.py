"""Print docs/recipes.md: the reference of every recipe key, generated from the schema.

    python -m potstill.cli.docs > docs/recipes.md      (make docs; a test checks it is current)
"""

from __future__ import annotations

from potstill.config import reference
from potstill.recipe import Recipe

INTRO = """# Recipe reference

A recipe is a YAML file that `potstill train` and `potstill distill` read. Every key is listed
below with its type, default and meaning; this page is generated from `src/potstill/recipe.py`
(`make docs`). Validation is strict: an unknown key is an error that names its full path and the
nearest valid key, a wrong type names the expected type and the value, and all problems are
reported at once. `--set section.key=value` overrides a key with the same checks, e.g.

    potstill distill recipes/fmnist/kd_cnn_to_mlp.yaml --set distill.temperature=2 --set distill.alpha=0.5

Model and loss arguments (`*.args`, `distill.loss_args`) are checked against the constructor's
signature: `potstill list models` / `potstill list losses` show what exists. The resolved recipe
is saved as `recipe.yaml` in the run folder.

Note on numbers: PyYAML reads `2e-3` as a string; potstill accepts such strings for number keys,
but `2.0e-3` is the portable spelling.
"""


def render() -> str:
    return INTRO + "\n" + reference(Recipe)


if __name__ == "__main__":
    print(render(), end="")
