"""`--param` of `potstill sweep`: which recipe keys vary and over what.

    --param distill.temperature=1,2,4,8         choices (each value read as YAML: 4, 0.5, true, [64, 32], kd)
    --param distill.alpha=0.1:0.9                a range, drawn by Optuna (floats; integers when both ends are)
    --param train.lr=1e-4:1e-2:log               a range on a log scale
    --param train.epochs=2:10:2                  a range with a step (enumerable, so a grid can take it)
    --param student.args.hidden=[64],[128, 64]   lists as choices: commas inside brackets stay in the value
    --param distill=@recipes/cifar100/methods.yaml   named choices: a YAML file mapping each name to a value
                                                 (here whole distill sections: one per method)

Each key becomes a SearchParamSpec (the same type a recipe's `search.space` holds), so the sweep and
`potstill search` share the drawing (Optuna), the grid enumeration and the key checks.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from potstill.compress.search_space import short
from potstill.config.files import load_yaml_file
from potstill.config.safe_yaml import parse_yaml
from potstill.errors import PotstillError
from potstill.recipe import SearchParamSpec


def parse_params(texts: list[str]) -> tuple[dict[str, SearchParamSpec], dict[str, dict[str, str]]]:
    """({key: spec} in the order given, {key: {value's JSON: name}} for named choices); a key twice,
    an empty list or a bad range is refused."""
    space: dict[str, SearchParamSpec] = {}
    names: dict[str, dict[str, str]] = {}
    for text in texts:
        key, body = split_key(text)
        if key in space:
            raise PotstillError(f"--param {text}: {key} is given twice; give each key once, with all its values")
        if body.startswith("@"):
            presets = read_presets(text, body[1:])
            space[key] = SearchParamSpec(choices=list(presets.values()))
            names[key] = {value_key(value): name for name, value in presets.items()}
        else:
            space[key] = parse_param(text)[1]
    return space, names


def split_key(text: str) -> tuple[str, str]:
    key, sep, body = text.partition("=")
    key, body = key.strip(), body.strip()
    if not sep or not key:
        raise PotstillError(f"--param {text}: write KEY=VALUES, e.g. --param distill.temperature=1,2,4 or "
                            "--param distill.alpha=0.1:0.9")
    if not body:
        raise PotstillError(f"--param {text}: the value list is empty; give values (1,2,4) or a range (low:high)")
    return key, body


def read_presets(text: str, path: str) -> dict[str, Any]:
    """A YAML file mapping names to values (named choices), read with the recipe reader."""
    try:
        presets = load_yaml_file(path)
    except PotstillError as error:
        raise PotstillError(f"--param {text}: {error}") from None
    if not presets:
        raise PotstillError(f"--param {text}: {path} names no values; map each name to a value, e.g. kd: {{loss: kd}}")
    if len({value_key(value) for value in presets.values()}) != len(presets):
        raise PotstillError(f"--param {text}: two names in {path} hold the same value; give each value once")
    return presets


def value_key(value: Any) -> str:
    """A value's identity for naming it: JSON with sorted keys."""
    return json.dumps(value, sort_keys=True)


def shown(values: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """`key=value` words for tables and messages; `names`: {key: name} of named choices, shown bare."""
    names = names or {}
    return " ".join(f"{key}={names[key]}" if isinstance(names.get(key), str)
                    else f"{key}={value}" if isinstance(value, str) else f"{key}={short(value)}" for key, value in values.items())


def named(values: dict[str, Any], names: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The values with named choices replaced by their names, for tables and messages."""
    return {key: names[key].get(value_key(value), value) if key in names else value for key, value in values.items()}


def parse_param(text: str) -> tuple[str, SearchParamSpec]:
    key, body = split_key(text)
    if is_range(body):
        spec = range_spec(text, body)
    else:
        values = [value_of(text, part) for part in split_top_level(body)]
        spec = SearchParamSpec(choices=values)
        if len({repr(v) for v in values}) != len(values):
            raise PotstillError(f"--param {text}: a value is listed twice; give each value once")
    problems = spec.check()
    if problems:
        raise PotstillError(f"--param {text}: {problems[0]}")
    return key, spec


def is_range(body: str) -> bool:
    """`low:high[:step|:log]` with numbers: a range (a choice list never holds a bare colon outside brackets)."""
    parts = body.split(":")
    if len(parts) not in (2, 3) or "[" in body or "{" in body or "," in body:
        return False
    return all(number(part) is not None for part in parts[:2])


def range_spec(text: str, body: str) -> SearchParamSpec:
    parts = body.split(":")
    low, high = number(parts[0]), number(parts[1])
    if low >= high:
        raise PotstillError(f"--param {text}: the range {body} is empty; write low:high with low below high")
    if len(parts) == 2:
        return SearchParamSpec(low=low, high=high)
    if parts[2].strip() == "log":
        return SearchParamSpec(low=float(low), high=float(high), log=True)
    step = number(parts[2])
    if step is None or step <= 0:
        raise PotstillError(f"--param {text}: the third part of a range is a positive step or `log`, got {parts[2]!r}")
    return SearchParamSpec(low=low, high=high, step=step)


def number(text: str) -> int | float | None:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def value_of(text: str, part: str) -> Any:
    if not part.strip():
        raise PotstillError(f"--param {text}: an empty value between commas; remove the extra comma")
    try:
        return parse_yaml(part.strip())
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PotstillError(f"--param {text}: cannot read the value {part.strip()!r} ({first})") from None


def split_top_level(body: str) -> list[str]:
    """Split at commas that are not inside [...] or {...}."""
    parts, depth, current = [], 0, ""
    for char in body:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def describe(space: dict[str, SearchParamSpec], names: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """Each key's values as a short text, for sweep.json and the table's title."""
    words = {}
    for key, spec in space.items():
        if names and key in names:
            words[key] = ", ".join(names[key].values())
        elif spec.choices is not None:
            words[key] = ", ".join(str(choice) for choice in spec.choices)
        else:
            tail = " (log)" if spec.log else (f" step {spec.step}" if spec.step is not None else "")
            words[key] = f"{spec.low} .. {spec.high}{tail}"
    return words
