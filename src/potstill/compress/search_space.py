"""The declared search space of `potstill search`: recipe keys, each with choices or a range.

A key is a recipe path as `--set` writes it (`student.args.hidden`, `train.lr`). A value that is
not a plain number or text (a list of widths) is given to Optuna as its JSON text, so the study's
parameters stay readable. A key with `depth: [min, max]` is a list: Optuna draws its length
(`KEY:depth`) and then each entry (`KEY:0`, `KEY:1`, ...). Each key is checked by applying a value
through the same path as `--set` and validating the result, so a mistaken key fails with the
recipe validator's own message.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any

from potstill import config
from potstill.errors import PotstillError
from potstill.recipe import Recipe, SearchParamSpec
from potstill.startup import preflight

# Keys every trial must share: the teacher's cached outputs, the data they describe and the
# validation split that selects are the same for all students, or the comparison means nothing.
FIXED = ("name", "output_dir", "device", "seed", "teacher", "data", "distill.cache", "search", "scheme.teachers")
FREE_DATA = ("data.batch_size",)
CHECKED_CHOICES = 50  # choices of one key validated before the search starts
RANGE_POINTS = 6  # values of a range tried when the budget check samples architectures


def fixed_reason(key: str) -> str | None:
    """Why `key` may not be searched, or None."""
    if key in FREE_DATA:
        return None
    for prefix in FIXED:
        if key == prefix or key.startswith(prefix + "."):
            return (f"'{prefix}' is the same for every trial (one teacher, its cached outputs, one validation split); "
                    "search student, train, distill or refine keys")
    return None


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def label(value: Any) -> Any:
    """The value as an Optuna categorical choice: itself if plain, else its JSON text."""
    return value if is_scalar(value) else json.dumps(value)


def as_override(key: str, value: Any) -> str:
    """`key=value` in --set form; JSON is YAML, so the strict recipe reader parses it back exactly."""
    return f"{key}={json.dumps(value)}"


def merged_overrides(key: str, value: Any) -> list[str]:
    """`--set` texts that merge a mapping into the recipe's section leaf by leaf (keys it does not
    name keep the recipe's values); any other value replaces the key, as as_override."""
    if not isinstance(value, dict) or not value:
        return [as_override(key, value)]
    return [text for name, entry in value.items() for text in merged_overrides(f"{key}.{name}", entry)]


def check_space(recipe_data: dict[str, Any], space: dict[str, SearchParamSpec], where: str = "search.space",
                overrides=lambda key, value: [as_override(key, value)]) -> None:
    """Refuse a fixed key, a key that is not a recipe key, or a value the recipe would refuse: each
    value (a range's ends) is applied as `overrides` writes it (--set texts), validated, and its names
    checked (preflight). `where`: how messages name the key's origin."""
    for key, spec in space.items():
        reason = fixed_reason(key)
        if reason is not None:
            raise PotstillError(f"{where}.{key}: {reason}" if where == "search.space" else f"{where} {key}: {reason}")
        for value in checked_values(spec):
            texts = overrides(key, value)
            override = " ".join(texts)
            data = config.apply_overrides(recipe_data, texts)
            data.pop("search", None)
            source = f"{where}.{key}" if where == "search.space" else f"{where} {key}"
            recipe = config.validate(data, Recipe, source=f"{source} (tried as --set {override})")
            try:
                preflight(recipe, "distill")
            except PotstillError as error:
                raise PotstillError(f"{source} (tried as --set {override}): {error}") from None


def checked_values(spec: SearchParamSpec) -> list[Any]:
    """The values check_space tries: every choice (up to CHECKED_CHOICES) or both ends of a range."""
    entries = list(spec.choices[:CHECKED_CHOICES]) if spec.choices is not None else [spec.low, spec.high]
    if spec.depth is None:
        return entries
    return [[entry] * depth for entry in entries for depth in sorted(set(spec.depth))]


def is_int_range(spec: SearchParamSpec) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in (spec.low, spec.high, spec.step) if v is not None)


def suggest(trial, space: dict[str, SearchParamSpec]) -> dict[str, Any]:
    """The trial's value of every key, drawn by Optuna (define-by-run: a list's entries after its length)."""
    values = {}
    for key, spec in space.items():
        if spec.depth is None:
            values[key] = suggest_one(trial, key, spec)
        else:
            depth = trial.suggest_int(f"{key}:depth", spec.depth[0], spec.depth[1])
            values[key] = [suggest_one(trial, f"{key}:{index}", spec) for index in range(depth)]
    return values


def suggest_one(trial, name: str, spec: SearchParamSpec) -> Any:
    if spec.choices is not None:
        labels = [label(choice) for choice in spec.choices]
        chosen = trial.suggest_categorical(name, labels)
        return spec.choices[labels.index(chosen)]
    if is_int_range(spec):
        return trial.suggest_int(name, spec.low, spec.high, step=spec.step or 1, log=spec.log)
    return trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)


def entry_values(spec: SearchParamSpec) -> list[Any] | None:
    """Every value one entry can take, or None for a continuous range."""
    if spec.choices is not None:
        return list(spec.choices)
    if is_int_range(spec):
        step = spec.step or 1
        if spec.log:
            return None
        return list(range(spec.low, spec.high + 1, step))
    if spec.step is not None and not spec.log:
        count = math.floor((spec.high - spec.low) / spec.step + 1e-9) + 1
        return [spec.low + index * spec.step for index in range(count)]
    return None


def key_values(spec: SearchParamSpec) -> list[Any] | None:
    """Every value a key can take (lists of every depth for a `depth` key), or None if endless."""
    entries = entry_values(spec)
    if entries is None:
        return None
    if spec.depth is None:
        return entries
    return [list(combo) for depth in range(spec.depth[0], spec.depth[1] + 1) for combo in itertools.product(entries, repeat=depth)]


def space_size(space: dict[str, SearchParamSpec]) -> int | None:
    """How many combinations the space holds; None when a key is a continuous range."""
    total = 1
    for spec in space.values():
        entries = entry_values(spec)
        if entries is None:
            return None
        count = len(entries) if spec.depth is None else sum(len(entries) ** d for d in range(spec.depth[0], spec.depth[1] + 1))
        total *= count
        if total > 10**9:  # far beyond any trial count: treat as endless
            return None
    return total


def combinations(space: dict[str, SearchParamSpec]) -> list[dict[str, Any]]:
    """Every combination of an enumerable space (space_size() not None), in a fixed order."""
    keys = list(space)
    values = [key_values(space[key]) for key in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def optuna_params(space: dict[str, SearchParamSpec], values: dict[str, Any]) -> dict[str, Any]:
    """The Optuna parameters (as `suggest` names them) that give `values`: for enqueue_trial."""
    params = {}
    for key, spec in space.items():
        value = values[key]
        if spec.depth is None:
            params[key] = label(value) if spec.choices is not None else value
            continue
        params[f"{key}:depth"] = len(value)
        for index, entry in enumerate(value):
            params[f"{key}:{index}"] = label(entry) if spec.choices is not None else entry
    return params


def sample_values(spec: SearchParamSpec, rng: random.Random) -> Any:
    """One value of a key for the budget check: from its values, or from RANGE_POINTS spread over a continuous range."""
    entries = entry_values(spec)
    if entries is None:
        if spec.log:
            low, high = math.log(spec.low), math.log(spec.high)
            entries = [math.exp(low + (high - low) * i / (RANGE_POINTS - 1)) for i in range(RANGE_POINTS)]
        else:
            entries = [spec.low + (spec.high - spec.low) * i / (RANGE_POINTS - 1) for i in range(RANGE_POINTS)]
        if is_int_range(spec):
            entries = sorted({round(entry) for entry in entries})
    if spec.depth is None:
        return rng.choice(entries)
    return [rng.choice(entries) for _ in range(rng.randint(spec.depth[0], spec.depth[1]))]


def architectures(space: dict[str, SearchParamSpec], limit: int, seed: int) -> list[dict[str, Any]]:
    """The distinct student architectures (values of the `student.` keys) the budget check measures:
    all of them when there are at most `limit`, else `limit` drawn with `seed` (the smallest and
    largest corners of every range and list included)."""
    student = {key: spec for key, spec in space.items() if is_student_key(key)}
    size = space_size(student)
    if size is not None and size <= limit:
        return combinations(student)
    rng = random.Random(seed)
    found: dict[str, dict[str, Any]] = {}
    for corner in (min, max):
        values = {key: corner_value(spec, corner) for key, spec in student.items()}
        found[json.dumps(values, sort_keys=True)] = values
    for _ in range(limit * 20):
        if len(found) >= limit:
            break
        values = {key: sample_values(spec, rng) for key, spec in student.items()}
        found.setdefault(json.dumps(values, sort_keys=True), values)
    return list(found.values())


def is_student_key(key: str) -> bool:
    """Does the key change the student's architecture (and so its size and latency)?"""
    return key == "student" or key.startswith("student.")


def corner_value(spec: SearchParamSpec, corner) -> Any:
    """The smallest (min) or largest (max) value of a key: numbers by size, lists by length too."""
    entries = entry_values(spec) or [spec.low, spec.high]
    numbers = [entry for entry in entries if isinstance(entry, (int, float)) and not isinstance(entry, bool)]
    entry = corner(numbers) if len(numbers) == len(entries) else entries[0]
    if spec.depth is None:
        return entry
    return [entry] * (spec.depth[0] if corner is min else spec.depth[1])


def words(values: dict[str, Any]) -> str:
    """`student.args.hidden=[256] train.lr=0.003` for messages and tables."""
    return " ".join(f"{key}={short(value)}" for key, value in values.items())


def short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value, separators=(", ", ": "))
