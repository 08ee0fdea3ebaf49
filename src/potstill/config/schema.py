"""Reading recipe schemas (nested dataclasses): their fields, resolved types and key paths.

Shared by the validator (to suggest a key path anywhere in the schema) and the reference writer.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Literal, Union

NONE_TYPE = type(None)


def is_schema(tp: Any) -> bool:
    """True for a dataclass class (not an instance)."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@functools.lru_cache(maxsize=None)
def schema_fields(schema: type) -> tuple[tuple[dataclasses.Field, Any], ...]:
    """(field, resolved type) for each key a recipe may set: the fields taken by `__init__`.

    `get_type_hints` resolves string annotations, so schemas may use `from __future__ import
    annotations`.
    """
    hints = typing.get_type_hints(schema)
    return tuple((field, hints[field.name]) for field in dataclasses.fields(schema) if field.init)


def join(path: str, key: str) -> str:
    """`distill` + `temperature` -> `distill.temperature`; the top level has the empty path."""
    if not path or not key:
        return path or key
    return f"{path}.{key}"


def is_union(tp: Any) -> bool:
    """True for `Union[...]`, `Optional[...]` and `X | Y`."""
    return typing.get_origin(tp) in (Union, types.UnionType)


def is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal


def container_kind(tp: Any) -> str | None:
    """'list', 'tuple' or 'dict' for those types (bare or subscripted), else None."""
    origin = typing.get_origin(tp) or tp
    return {list: "list", tuple: "tuple", dict: "dict"}.get(origin)


def item_types(tp: Any) -> tuple[Any, ...]:
    """The type arguments of a container, with `Any` filled in for bare `list`, `dict`, `tuple`."""
    args = typing.get_args(tp)
    if args:
        return args
    return {"list": (Any,), "tuple": (Any, ...), "dict": (Any, Any)}[container_kind(tp)]


def is_variadic_tuple(tp: Any) -> bool:
    """True for `tuple[X, ...]` and bare `tuple`, False for fixed-length `tuple[X, Y]`."""
    args = item_types(tp)
    return len(args) == 2 and args[1] is Ellipsis


def is_required(field: dataclasses.Field) -> bool:
    """A field without a default must be given in the recipe."""
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def default_value(field: dataclasses.Field) -> Any:
    """The value a field takes when the recipe leaves it out (a fresh one from a factory)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def nested_sections(tp: Any, path: str) -> list[tuple[str, type]]:
    """The dataclasses a field type holds, with the path of their section.

    `Optional[Spec]` -> `path`; `list[Spec]` -> `path[]`; `dict[str, Spec]` -> `path.<key>`.
    """
    if is_schema(tp):
        return [(path, tp)]
    if is_union(tp):
        return [section for member in typing.get_args(tp) for section in nested_sections(member, path)]
    kind = container_kind(tp)
    if kind == "dict":
        return nested_sections(item_types(tp)[1], f"{path}.<key>")
    if kind in ("list", "tuple"):
        return [s for item in item_types(tp) if item is not Ellipsis for s in nested_sections(item, f"{path}[]")]
    return []


def sections(schema: type) -> list[tuple[str, type]]:
    """Every section of a schema, depth first: `[("", Recipe), ("distill", Distill), ...]`.

    A dataclass that contains itself (directly or not) is listed once, not followed forever.
    """
    found: list[tuple[str, type]] = []

    def visit(path: str, section: type, inside: tuple[type, ...]) -> None:
        found.append((path, section))
        for field, tp in schema_fields(section):
            for sub_path, sub_schema in nested_sections(tp, join(path, field.name)):
                if sub_schema not in inside:
                    visit(sub_path, sub_schema, inside + (sub_schema,))

    visit("", schema, (schema,))
    return found


def key_paths(schema: type) -> list[str]:
    """Every full key path of a schema, e.g. `distill.schedule.kind`, `teachers[].model`."""
    return [join(path, field.name) for path, section in sections(schema) for field, _ in schema_fields(section)]
