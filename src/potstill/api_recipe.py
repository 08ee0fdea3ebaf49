"""Keyword arguments of the Python API -> the same validated Recipe the CLI builds.

    potstill.distill(teacher, student, train, test, epochs=20, alpha=0.1,
                     terms=[{"loss": "fitnet", "weight": 2.0, "pairs": [{"student": "block1", "teacher": "layer2"}]}],
                     cache={"enabled": True}, engine={"precision": "bf16"}, scheme="offline")
    potstill.distill(teacher, student, train, test, recipe="recipes/fmnist/kd_cnn_to_mlp.yaml", epochs=3)

Every key of the recipe sections train, distill and data (but the dataset itself, which comes as
arguments) is an argument of the same name; `refine_epochs`/`refine_lr` are refine's keys;
`seed`, `device`, `engine`, `scheme`, `report` and `name` are top-level keys. `recipe=` starts from
a recipe mapping or YAML file (its teacher, student and dataset sections must be left out); the
arguments then override it. One validator checks the result, so a mistake gets the recipe's
message, with the key named as the argument you wrote (`alpha: must be a finite number`).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

from potstill.config import validate
from potstill.config.files import load_yaml_file
from potstill.config.schema import schema_fields
from potstill.errors import PotstillError
from potstill.recipe import DataSpec, DistillSpec, ModelSpec, Recipe, TrainSpec

DATA_FROM_ARGUMENTS = ("name", "root", "args", "test_fraction", "train_data")  # the data is the arguments themselves
TOP = ("name", "seed", "device", "engine", "scheme", "report")


def placement() -> dict[str, tuple[str, str]]:
    """argument -> (recipe section or "" for the top level, key), read off the schema."""
    places = {field.name: ("train", field.name) for field, _ in schema_fields(TrainSpec)}
    places |= {field.name: ("distill", field.name) for field, _ in schema_fields(DistillSpec)}
    places |= {field.name: ("data", field.name) for field, _ in schema_fields(DataSpec) if field.name not in DATA_FROM_ARGUMENTS}
    places |= {"refine_epochs": ("refine", "epochs"), "refine_lr": ("refine", "lr")}
    return places | {key: ("", key) for key in TOP}


def recipe_from_settings(settings: dict[str, Any], caller: str, recipe: str | os.PathLike | dict | None = None) -> Recipe:
    """The validated Recipe for a call's keyword arguments, starting from `recipe` when given."""
    data = base_recipe(recipe, caller)
    places = placement()
    for argument, value in settings.items():
        if argument not in places:
            raise PotstillError(f"{caller} got an unknown argument '{argument}'; accepted: {', '.join(sorted(places))}, "
                                "teacher_preprocess, student_preprocess, recipe")
        section, key = places[argument]
        (data.setdefault(section, {}) if section else data)[key] = value
    data.setdefault("name", "python")
    try:
        return validate(data, Recipe, source=f"{caller} arguments")
    except PotstillError as error:
        raise PotstillError(python_words(str(error), places)) from None


def base_recipe(recipe: str | os.PathLike | dict | None, caller: str) -> dict[str, Any]:
    if recipe is None:
        return {}
    data = load_yaml_file(Path(recipe)) if isinstance(recipe, (str, os.PathLike)) else copy.deepcopy(recipe)
    if not isinstance(data, dict):
        raise PotstillError(f"{caller}: recipe= must be a recipe mapping or a YAML file, got {type(recipe).__name__}")
    given = [key for key in ("teacher", "student") if data.get(key) is not None]
    given += [f"data.{key}" for key in DATA_FROM_ARGUMENTS if isinstance(data.get("data"), dict) and key in data["data"]]
    if given:
        raise PotstillError(f"{caller}: the recipe's {', '.join(given)} would be ignored (the models and data are the "
                            "arguments); leave them out of recipe=")
    data.pop("output_dir", None)  # the run folder is run_dir
    return data


def python_words(message: str, places: dict[str, tuple[str, str]]) -> str:
    """Recipe key paths in a message as the argument names a Python caller wrote."""
    for argument, (section, key) in places.items():
        if section:
            message = re.sub(rf"\b{section}\.{key}\b", argument, message)
    return message


def preprocessing_settings(settings: dict[str, Any], roles: list[str], caller: str) -> dict[str, Any]:
    """Pop `<role>_preprocess` (train(): `preprocess`) for each model, checked like the recipe key
    `model.preprocess`. The default, auto, keeps what potstill attached to the model before (one
    from potstill.train or load_model), else none: your models see your inputs as you gave them."""
    chosen = {}
    for role in roles:
        key = "preprocess" if role == "model" else f"{role}_preprocess"
        value = settings.pop(key, "auto")
        try:
            chosen[role] = validate({"name": role, "preprocess": value}, ModelSpec, source=f"{caller} arguments").preprocess
        except PotstillError as error:
            raise PotstillError(str(error).replace("preprocess", key, 1)) from None
    return chosen
