"""Print the generated references (make docs; tests check both are current):

    python -m potstill.cli.docs > docs/recipes.md          every recipe key, from the schema
    python -m potstill.cli.docs losses > docs/losses.md    every loss, from the registry and docstrings
"""

from __future__ import annotations

import inspect
import sys

from potstill.config import reference
from potstill.knowledge import FAMILIES, LOSSES
from potstill.recipe import Recipe

INTRO = """# Recipe reference

A recipe is a YAML file that `potstill train` and `potstill distill` read. Every key is listed
below with its type, default and meaning; this page is generated from `src/potstill/recipe.py`
(`make docs`). Validation is strict: an unknown key is an error that names its full path and the
nearest valid key, a wrong type names the expected type and the value, and all problems are
reported at once. `--set section.key=value` overrides a key with the same checks, e.g.

<!-- docs-test: budget --set teacher.train.epochs=3 --set train.epochs=3 -->
```bash
potstill distill recipes/digits/demo.yaml --set distill.temperature=2 --set distill.alpha=0.5
```

Model and loss arguments (`*.args`, `distill.loss_args`) are checked against the constructor's
signature: `potstill list models` / `potstill list losses` show what exists. The resolved recipe
is saved as `recipe.yaml` in the run folder.

Note on YAML: recipes are read as YAML 1.2-style data: `2e-3` is a number, only `true`/`false`
are booleans (`yes`, `no`, `on`, `off` stay text), a key written twice is an error naming both
lines, and every number must be finite. Recipes are at most 256 KiB.
"""


LOSSES_INTRO = """# Loss reference

Every registered distillation loss, generated from the registry and each loss's docstring
(`make docs`). `kind` is the knowledge it transfers; `pairs: auto` is the layers an automatic
pairing gives it (see docs/guide.md, "Feature and relation losses"); `default weight` is the
paper's weight, used when a recipe leaves `beta` (or a term's `weight`) null. Hyperparameters are
the constructor's arguments, set in `distill.loss_args` or a term's `args`.
"""


def loss_section(name: str) -> str:
    loss = LOSSES.get(name)
    arguments = [f"`{key}` = {param.default!r}" for key, param in LOSSES.parameters(name).items()]
    facts = (
        f"kind **{loss.kind}** · pairs: auto → `{loss.pairing}` · default weight {loss.default_weight:g}"
        + ("" if loss.needs_teacher else " · no teacher needed")
    )
    docstring = inspect.cleandoc(sys.modules[loss.__module__].__doc__ or "")
    return (
        f"## `{name}`\n\n{facts}\n\nhyperparameters: {', '.join(arguments) or 'none'}\n\n"
        f"```text\n{docstring}\n```\n"
    )


def render_losses() -> str:
    ordered = sorted(LOSSES.names(), key=lambda name: (FAMILIES.index(LOSSES.get(name).kind), name))
    return LOSSES_INTRO + "\n" + "\n".join(loss_section(name) for name in ordered)


def render() -> str:
    return INTRO + "\n" + reference(Recipe)


if __name__ == "__main__":
    print(render_losses() if sys.argv[1:] == ["losses"] else render(), end="")
