"""Command-line overrides: `--set distill.temperature=2` changes one key of the loaded recipe.

Values are read as YAML (`2` -> int, `[64, 64]` -> list, `null` -> None) by the recipe files'
strict reader (`safe_yaml`). Keys and types are not checked here: `validate` checks the result, so a bad `--set` is reported with its key path exactly
like a mistake in the file.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, MutableMapping
from typing import Any

import yaml

from potstill.config.describe import value_words
from potstill.config.safe_yaml import RefusedYAML, parse_yaml
from potstill.errors import PotstillError

OVERRIDE_FORM = "--set section.key=value"
LONGEST_SHOWN = 100  # characters of an override quoted in a message


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
        raise PotstillError(f"malformed override {_short(override)}: expected the form {OVERRIDE_FORM}")
    path, _, text = override.partition("=")
    keys = [key.strip() for key in path.split(".")]
    if not all(keys):
        raise PotstillError(
            f"malformed override {_short(override)}: the key path before '=' is empty or has an empty part; "
            f"expected the form {OVERRIDE_FORM}"
        )
    try:
        value = parse_yaml(text)
    except RefusedYAML as error:
        raise PotstillError(f"override {_short(override)}: {error}") from None
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PotstillError(
            f"override {_short(override)}: the value is not valid YAML ({problem}); "
            f"to pass it as text, write it as a quoted YAML string"
        ) from None
    return keys, value


def _set_key(data: dict[str, Any], keys: list[str], value: Any, override: str) -> None:
    """Walk mappings by key and lists by index (`distill.terms.0.loss`), then set the last key."""
    node: Any = data
    for depth, key in enumerate(keys[:-1]):
        section = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            node = node[_index(node, key, ".".join(keys[:depth]), override)]
            if not isinstance(node, MutableMapping):
                raise PotstillError(f"cannot apply override {_short(override)}: '{section}' holds {value_words(node)}, not a mapping of keys")
            continue
        child = node.get(key)
        if child is None:  # absent, or `key: null` in the file: start a new section
            child = node[key] = {}
        elif not isinstance(child, (MutableMapping, list)):
            raise PotstillError(
                f"cannot apply override {_short(override)}: '{section}' holds {value_words(child)}, "
                f"not a mapping of keys"
            )
        node = child
    if isinstance(node, list):
        node[_index(node, keys[-1], ".".join(keys[:-1]), override)] = value
    else:
        node[keys[-1]] = value


def _index(items: list[Any], key: str, section: str, override: str) -> int:
    if not key.isdigit() or int(key) >= len(items):
        raise PotstillError(
            f"cannot apply override {_short(override)}: '{section}' is a list of {len(items)} item(s); "
            f"index it with 0..{len(items) - 1}, e.g. {section}.0.key=value"
        )
    return int(key)


def _short(override: Any) -> str:
    """The override quoted for a message; a very long one (a pasted list) is cut."""
    text = repr(override)
    return text if len(text) <= LONGEST_SHOWN else text[:LONGEST_SHOWN] + "..."
