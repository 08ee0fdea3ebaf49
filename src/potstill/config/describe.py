"""Plain words for types and values, used in error messages and in the key reference.

    type_words(Optional[float])              -> "number or null"
    type_words(list[int], article=True)      -> "a list of integers"
    value_words("hot")                       -> "the string 'hot'"
    yaml_words({"hidden": [64, 64]})         -> "{hidden: [64, 64]}"
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from potstill.config.schema import (
    NONE_TYPE,
    container_kind,
    is_literal,
    is_schema,
    is_union,
    is_variadic_tuple,
    item_types,
)

SCALAR_WORDS = {bool: "boolean", int: "integer", float: "number", str: "string"}
PLURAL_NOUNS = ("boolean", "integer", "number", "string", "mapping", "list")
SHORT = 40  # longest value shown in a message before it is cut with "..."


def type_words(tp: Any, article: bool = False) -> str:
    """A type in plain words: 'number', 'list of integers', "one of 'a', 'b'", 'string or null'."""
    if tp is Any:
        return "anything"
    if tp is NONE_TYPE:
        return "null"
    if is_union(tp):
        members = typing.get_args(tp)
        words = [type_words(member, article) for member in members if member is not NONE_TYPE]
        return join_or(words + (["null"] if NONE_TYPE in members else []))
    if is_literal(tp):
        return "one of " + ", ".join(yaml_words(option) for option in typing.get_args(tp))
    words = _noun_words(tp)
    if not article:
        return words
    return ("an " if words[0] in "aeiou" else "a ") + words


def _noun_words(tp: Any) -> str:
    """Words for a type that takes an article: 'integer', 'mapping', 'list of numbers', ..."""
    if tp in SCALAR_WORDS:
        return SCALAR_WORDS[tp]
    if is_schema(tp):
        return "mapping"
    kind = container_kind(tp)
    if kind == "dict":
        values = item_types(tp)[1]
        return "mapping" if values is Any else f"mapping of {plural_words(values)}"
    if kind == "list" or (kind == "tuple" and is_variadic_tuple(tp)):
        item = item_types(tp)[0]
        return "list" if item is Any else f"list of {plural_words(item)}"
    if kind == "tuple":
        return "list [" + ", ".join(type_words(item) for item in item_types(tp)) + "]"
    return getattr(tp, "__name__", str(tp))


def plural_words(tp: Any) -> str:
    """'integers', 'lists of numbers'; types without a plain plural are put in parentheses."""
    words = type_words(tp)
    first, _, rest = words.partition(" ")
    if first in PLURAL_NOUNS:
        return f"{first}s {rest}".rstrip()
    return f"({words})"


def join_or(words: list[str]) -> str:
    """['a', 'b', 'c'] -> 'a, b or c'."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def value_words(value: Any) -> str:
    """A value as an error message shows it: "the string 'hot'", 'the integer 3', 'null'."""
    if value is None or isinstance(value, bool):
        return yaml_words(value)
    if isinstance(value, int):
        return f"the integer {short_yaml_words(value)}"
    if isinstance(value, float):
        return f"the number {yaml_words(value)}"
    if isinstance(value, str):
        return f"the string {short_yaml_words(value)}"
    if isinstance(value, (list, tuple)):
        return f"a list {short_yaml_words(value)}"
    if isinstance(value, Mapping):
        return f"a mapping {short_yaml_words(value)}"
    return f"a {type(value).__name__}"


def yaml_words(value: Any) -> str:
    """A value written inline as YAML would read it back: null, true, 'text', 1.0e-05, [1, 2]."""
    return "".join(_yaml_pieces(value))


def short_yaml_words(value: Any, limit: int = SHORT) -> str:
    """`yaml_words` cut to `limit` characters with "...". Only what is shown is rendered, so a huge
    value (a list of a million items, a 4000-digit integer) costs no more than a small one."""
    text = ""
    for piece in _yaml_pieces(value):
        text += piece
        if len(text) > limit:
            return text[: limit - 3] + "..."
    return text


def _yaml_pieces(value: Any) -> Iterator[str]:
    """The text of `yaml_words` in pieces, produced lazily: items of a list or mapping are
    rendered only when the text before them was used."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if value is None:
        yield "null"
    elif isinstance(value, bool):
        yield "true" if value else "false"
    elif isinstance(value, float):
        yield _float_words(value)
    elif isinstance(value, int):
        yield _int_words(value)
    elif isinstance(value, str):
        yield "'" + value.replace("'", "''") + "'"
    elif isinstance(value, (list, tuple)):
        yield "["
        for index, item in enumerate(value):
            yield ", " if index else ""
            yield from _yaml_pieces(item)
        yield "]"
    elif isinstance(value, Mapping):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield (", " if index else "") + str(key) + ": "
            yield from _yaml_pieces(item)
        yield "}"
    else:
        yield str(value)


def _int_words(value: int) -> str:
    # str() refuses integers of more than 4300 digits (Python >= 3.11); YAML text never holds one
    if value.bit_length() < 14_000:  # fewer than about 4200 digits
        return str(value)
    return f"{'-' if value < 0 else ''}<an integer of more than 4000 digits>"


def _float_words(value: float) -> str:
    # PyYAML reads `1e-05` as a string: it wants a dot in the mantissa, so write `1.0e-05`.
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    mantissa, has_exponent, exponent = text.partition("e")
    if has_exponent and "." not in mantissa:
        return f"{mantissa}.0e{exponent}"
    return text
