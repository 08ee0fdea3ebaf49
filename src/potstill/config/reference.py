"""A Markdown reference of every recipe key, written from the schema itself.

One table per section (`distill`, `distill.schedule`, ...) with columns key | type | default |
meaning; the meaning is the field's `metadata={"help": ...}`.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from potstill.config.describe import type_words, yaml_words
from potstill.config.schema import default_value, is_required, join, nested_sections, schema_fields, sections


def reference(schema: type) -> str:
    """Markdown tables documenting every key of `schema` and of its nested sections."""
    blocks = [f"# `{schema.__name__}` keys"]
    for path, section in sections(schema):
        blocks.append(_section_block(path, section))
    return "\n\n".join(blocks) + "\n"


def _section_block(path: str, section: type) -> str:
    heading = f"## `{path}`" if path else "## top level"
    lines = [heading, ""]
    summary = _summary(section)
    if summary:
        lines += [summary, ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for field, tp in schema_fields(section):
        key_path = join(path, field.name)
        cells = [f"`{key_path}`", _type_cell(tp, key_path), _default_cell(field), _meaning(field)]
        lines.append("| " + " | ".join(_escape(cell) for cell in cells) + " |")
    return "\n".join(lines)


def _summary(section: type) -> str:
    """The first paragraph of a section's docstring; dataclass's generated signature is skipped."""
    doc = inspect.getdoc(section) or ""
    if doc.startswith(f"{section.__name__}("):
        return ""
    return doc.split("\n\n")[0].replace("\n", " ")


def _type_cell(tp: Any, path: str) -> str:
    words = type_words(tp)
    sub_paths = [sub_path for sub_path, _ in nested_sections(tp, path)]
    if sub_paths:
        words += ", see " + ", ".join(f"`{sub_path}`" for sub_path in sub_paths)
    return words


def _default_cell(field: dataclasses.Field) -> str:
    if is_required(field):
        return "required"
    value = default_value(field)
    if dataclasses.is_dataclass(value):
        return "see section"
    return f"`{yaml_words(value)}`"


def _meaning(field: dataclasses.Field) -> str:
    help_text = str(field.metadata.get("help", ""))
    low, high = field.metadata.get("min"), field.metadata.get("max")
    if low is not None and high is not None:
        bounds = f"between {low} and {high}"
    elif low is not None:
        bounds = f"at least {low}"
    elif high is not None:
        bounds = f"at most {high}"
    else:
        return help_text
    return f"{help_text} ({bounds})" if help_text else bounds


def _escape(cell: str) -> str:
    return " ".join(cell.split()).replace("|", "\\|")
