"""Reading recipe files: YAML in (a strict safe loader, `safe_yaml`), a validated schema instance out."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from potstill.config.describe import value_words
from potstill.config.overrides import apply_overrides
from potstill.config.safe_yaml import RefusedYAML, parse_yaml
from potstill.config.validate import validate
from potstill.errors import PotstillError

# Recipes are a few kB. 256 KiB (100 times the longest in recipes/) still reads in about a
# second with the pure-Python YAML parser; a bigger file is the wrong file, or endless.
MAX_BYTES = 256 << 10


def load(path: str | os.PathLike[str], schema: type, overrides: Iterable[str] = ()) -> Any:
    """Read a recipe file, apply `--set` overrides and validate it against `schema`."""
    data = apply_overrides(load_yaml_file(path), overrides)
    return validate(data, schema, source=str(path))


def load_yaml_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The top-level mapping of a YAML file; PotstillError for a missing, empty, too large or
    invalid file."""
    file = Path(path)
    text = _read_text(file)
    try:
        data = parse_yaml(text)
    except RefusedYAML as error:
        raise PotstillError(f"recipe {file}: {error}") from None
    except yaml.YAMLError as error:
        raise PotstillError(_syntax_message(file, error)) from None
    if data is None:
        raise PotstillError(f"recipe file is empty: {file}")
    if not isinstance(data, dict):
        raise PotstillError(f"recipe file {file} must hold a mapping of keys at the top level, got {value_words(data)}")
    return data


def _read_text(file: Path) -> str:
    """At most MAX_BYTES of a regular file or a pipe (`<(...)`), as UTF-8 text."""
    try:
        mode = file.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise PotstillError(f"recipe file not found: {file}") from None
    except OSError as error:
        raise PotstillError(f"cannot read recipe file {file}: {error.strerror}") from None
    if stat.S_ISDIR(mode):
        raise PotstillError(f"recipe path is a directory, not a file: {file}")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):  # a device never ends (/dev/zero) or waits (a tty)
        raise PotstillError(f"recipe path is not a regular file: {file}; give a .yaml file")
    try:
        with file.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
    except OSError as error:
        raise PotstillError(f"cannot read recipe file {file}: {error.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise PotstillError(f"recipe file {file} is larger than {MAX_BYTES >> 10} KiB; recipes are short text files")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PotstillError(f"recipe file is not UTF-8 text: {file}") from None


def _syntax_message(file: Path, error: yaml.YAMLError) -> str:
    """'invalid YAML in FILE at line L, column C: PROBLEM', from PyYAML's marked errors."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or getattr(error, "context", None) or str(error)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    hint = " (indent with spaces, not tabs)" if "\\t" in problem else ""
    return f"invalid YAML in {file}{where}: {problem}{hint}"
