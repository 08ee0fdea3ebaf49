"""Reading recipe files: YAML in (safe loader only), a validated schema instance out."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from potstill.config.describe import value_words
from potstill.config.overrides import apply_overrides
from potstill.config.validate import validate
from potstill.errors import PotstillError


def load(path: str | os.PathLike[str], schema: type, overrides: Iterable[str] = ()) -> Any:
    """Read a recipe file, apply `--set` overrides and validate it against `schema`."""
    data = apply_overrides(load_yaml_file(path), overrides)
    return validate(data, schema, source=str(path))


def load_yaml_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The top-level mapping of a YAML file; PotstillError for a missing, empty or invalid file."""
    file = Path(path)
    text = _read_text(file)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PotstillError(_syntax_message(file, error)) from None
    if data is None:
        raise PotstillError(f"recipe file is empty: {file}")
    if not isinstance(data, dict):
        raise PotstillError(f"recipe file {file} must hold a mapping of keys at the top level, got {value_words(data)}")
    return data


def _read_text(file: Path) -> str:
    if not file.exists():
        raise PotstillError(f"recipe file not found: {file}")
    if file.is_dir():
        raise PotstillError(f"recipe path is a directory, not a file: {file}")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PotstillError(f"recipe file is not UTF-8 text: {file}") from None
    except OSError as error:
        raise PotstillError(f"cannot read recipe file {file}: {error.strerror}") from None


def _syntax_message(file: Path, error: yaml.YAMLError) -> str:
    """'invalid YAML in FILE at line L, column C: PROBLEM', from PyYAML's marked errors."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or getattr(error, "context", None) or str(error)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    hint = " (indent with spaces, not tabs)" if "\\t" in problem else ""
    return f"invalid YAML in {file}{where}: {problem}{hint}"
