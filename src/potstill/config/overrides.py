"""Command-line overrides: `--set distill.temperature=2` changes one key of the loaded recipe.

Values are read as YAML (`2` -> int, `[64, 64]` -> list, `null` -> None). Keys and types are not
checked here: `validate` checks the result, so a bad `--set` is reported with its key path exactly
like a mistake in the file.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, MutableMapping
from typing import Any

import yaml

from potstill.config.describe import value_words
from potstill.errors import PotstillError

OVERRIDE_FORM = "--set section.key=value"


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of `data` with each `dotted.path=value` applied in order; missing sections are
    created. `data` itself is not changed."""
    result = copy.deepcopy(data)
    for override in overrides:
        keys, value = parse_override(override)
        _set_key(result, keys, value, override)
    return result


def parse_override(override: str) -> tuple[list[str], Any]:
    """'distill.temperature=2' -> (['distill', 'temperature'], 2)."""
    if not isinstance(override, str) or "=" not in override:
        raise PotstillError(f"malformed override {override!r}: expected the form {OVERRIDE_FORM}")
    path, _, text = override.partition("=")
    keys = [key.strip() for key in path.split(".")]
    if not all(keys):
        raise PotstillError(
            f"malformed override {override!r}: the key path before '=' is empty or has an empty part; "
            f"expected the form {OVERRIDE_FORM}"
        )
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PotstillError(
            f"override {override!r}: the value is not valid YAML ({problem}); "
            f"to pass it as text, write it as a quoted YAML string"
        ) from None
    return keys, value


def _set_key(data: dict[str, Any], keys: list[str], value: Any, override: str) -> None:
    node: MutableMapping[Any, Any] = data
    for depth, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:  # absent, or `key: null` in the file: start a new section
            child = node[key] = {}
        elif not isinstance(child, MutableMapping):
            section = ".".join(keys[: depth + 1])
            raise PotstillError(
                f"cannot apply override {override!r}: '{section}' holds {value_words(child)}, "
                f"not a mapping of keys"
            )
        node = child
    node[keys[-1]] = value
