"""`--param` of `potstill sweep`: which recipe keys vary and over what.

    --param distill.temperature=1,2,4,8         choices (each value read as YAML: 4, 0.5, true, [64, 32], kd)
    --param distill.alpha=0.1:0.9                a range, drawn by Optuna (floats; integers when both ends are)
    --param train.lr=1e-4:1e-2:log               a range on a log scale
    --param train.epochs=2:10:2                  a range with a step (enumerable, so a grid can take it)
    --param student.args.hidden=[64],[128, 64]   lists as choices: commas inside brackets stay in the value

Each key becomes a SearchParamSpec (the same type a recipe's `search.space` holds), so the sweep and
`potstill search` share the drawing (Optuna), the grid enumeration and the key checks.
"""

from __future__ import annotations

from typing import Any

import yaml

from potstill.config.safe_yaml import parse_yaml
from potstill.errors import PotstillError
from potstill.recipe import SearchParamSpec


def parse_params(texts: list[str]) -> dict[str, SearchParamSpec]:
    """{key: spec} in the order given; a key twice, an empty list or a bad range is refused."""
    space: dict[str, SearchParamSpec] = {}
    for text in texts:
        key, spec = parse_param(text)
        if key in space:
            raise PotstillError(f"--param {text}: {key} is given twice; give each key once, with all its values")
        space[key] = spec
    return space


def parse_param(text: str) -> tuple[str, SearchParamSpec]:
    key, sep, body = text.partition("=")
    key, body = key.strip(), body.strip()
    if not sep or not key:
        raise PotstillError(f"--param {text}: write KEY=VALUES, e.g. --param distill.temperature=1,2,4 or "
                            "--param distill.alpha=0.1:0.9")
    if not body:
        raise PotstillError(f"--param {text}: the value list is empty; give values (1,2,4) or a range (low:high)")
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
        raise PotstillError(f"--param {text}: cannot read the value {part.strip()!r} ({error})") from None


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


def describe(space: dict[str, SearchParamSpec]) -> dict[str, str]:
    """Each key's values as a short text, for sweep.json and the table's title."""
    words = {}
    for key, spec in space.items():
        if spec.choices is not None:
            words[key] = ", ".join(str(choice) for choice in spec.choices)
        else:
            tail = " (log)" if spec.log else (f" step {spec.step}" if spec.step is not None else "")
            words[key] = f"{spec.low} .. {spec.high}{tail}"
    return words
