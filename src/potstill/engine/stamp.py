"""What a run's files were made with: the resolved recipe, stamped into every checkpoint and model
file, so that `--resume` notices a `recipe.yaml` edited after the run started.

Without it, changing the temperature in a killed run's recipe and resuming would train half the
run at one value and half at another, and report it as one run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from potstill.config import to_dict
from potstill.config.describe import yaml_words
from potstill.engine.weights import header_of
from potstill.errors import PotstillError

MOST_NAMED = 6


def recipe_stamp(recipe: Any) -> dict[str, Any]:
    """{"recipe": the resolved recipe as plain data, "recipe_sha256": its fingerprint}."""
    plain = to_dict(recipe)
    digest = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()
    return {"recipe": plain, "recipe_sha256": digest}


def recipe_changes(saved: Any, current: Any, path: str = "") -> list[str]:
    """Every key whose value differs, as 'key.path: old -> new'."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in list(saved) + [k for k in current if k not in saved]:
            found += recipe_changes(saved.get(key), current.get(key), f"{path}.{key}" if path else str(key))
        return found
    if saved != current:
        return [f"{path or 'recipe'}: {yaml_words(saved)} -> {yaml_words(current)}"]
    return []


def stamped_recipe(path: Path) -> dict[str, Any] | None:
    """The recipe stamped in a safetensors file's header, without loading its tensors."""
    recipe = header_of(path).get("recipe")  # {} for a damaged file: loading it names the damage
    return recipe if isinstance(recipe, dict) else None


def check_resume(run_path: Path, recipe: Any) -> None:
    """Refuse to resume when a stage's checkpoint or weights were made with another recipe than
    the one the run folder holds now, naming the keys that differ."""
    current = recipe_stamp(recipe)["recipe"]
    for path in sorted(run_path.glob("*/checkpoint.safetensors")) + sorted(run_path.glob("*/model.safetensors")):
        saved = stamped_recipe(path)
        if saved is None:  # written before stamps existed, or damaged: loading it names the damage
            continue
        changes = recipe_changes(saved, current)
        if changes:
            shown = "; ".join(changes[:MOST_NAMED]) + (f"; and {len(changes) - MOST_NAMED} more" if len(changes) > MOST_NAMED else "")
            raise PotstillError(
                f"cannot resume {run_path}: {path.relative_to(run_path)} was made with another recipe than "
                f"{run_path / 'recipe.yaml'} now holds ({shown}); a resumed run must continue with the settings it "
                "started with: restore recipe.yaml, or start a new run with --run-dir"
            )
