"""Where a search lives: its recipe (a file, a Recipe, or the saved one of a search to continue)
and its folder, which the same command continues as long as the recipe is the same."""

from __future__ import annotations

from pathlib import Path

from potstill import config
from potstill.engine.lock import LOCK_NAME
from potstill.engine.stamp import recipe_changes
from potstill.errors import PotstillError
from potstill.recipe import Recipe

GROWING = ("search.trials",)  # what may change when a search is continued


def import_optuna(command: str = "potstill search"):
    try:
        import optuna
    except ImportError:
        raise PotstillError(f"{command} needs Optuna, which is not installed: pip install -e '.[compress]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def resolve(recipe: str | Path | Recipe | None, overrides, run_dir, resume) -> tuple[Recipe, Path]:
    """The validated recipe and the search folder."""
    overrides = list(overrides)
    if isinstance(recipe, Recipe):
        loaded = config.validate(config.apply_overrides(config.to_dict(recipe), overrides), Recipe, source="the recipe")
    elif recipe is not None:
        loaded = config.load(recipe, Recipe, overrides)
    elif resume is not None:
        saved = Path(resume) / "recipe.yaml"
        if not saved.is_file():
            raise PotstillError(f"cannot resume {resume}: it holds no recipe.yaml, so it is not a potstill search folder")
        data = config.apply_overrides(config.load_yaml_file(saved), overrides)
        loaded = config.validate(data, Recipe, source=f"{saved} with --set" if overrides else str(saved))
    else:
        raise PotstillError("give a recipe file, e.g. potstill search recipes/fmnist/student_search.yaml")
    if resume is not None and run_dir is not None and Path(resume) != Path(run_dir):
        raise PotstillError("give either --resume FOLDER or --run-dir FOLDER, not two different folders")
    folder = Path(resume or run_dir or Path(loaded.output_dir) / loaded.name)
    return loaded, folder


def check_folder(folder: Path, recipe: Recipe, resume: bool) -> bool:
    """True when `folder` holds a search of the same recipe (to continue); False for a new, empty
    folder; a PotstillError for anything else."""
    if folder.exists() and not folder.is_dir():
        raise PotstillError(f"search folder {folder} is a file, not a folder; choose another --run-dir")
    saved = folder / "recipe.yaml"
    if saved.is_file():
        before = config.to_dict(config.load(saved, Recipe))
        if before.get("search") is None:
            raise PotstillError(f"{folder} holds a potstill run, not a search; choose another --run-dir")
        changed = [change for change in recipe_changes(before, config.to_dict(recipe))
                   if change.split(": ", 1)[0] not in GROWING]
        if changed:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            raise PotstillError(
                f"search folder {folder} was started with another recipe ({shown}); continue it with the same "
                "recipe (only search.trials may change), or start a new search with --run-dir"
            )
        return True
    if resume:
        raise PotstillError(f"cannot resume {folder}: it holds no recipe.yaml, so it is not a potstill search folder")
    if folder.is_dir() and any(entry.name != LOCK_NAME for entry in folder.iterdir()):
        raise PotstillError(f"search folder {folder} already exists and holds no search; choose another --run-dir")
    return False
