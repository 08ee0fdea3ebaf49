"""Strict validation of plain YAML data against a recipe schema (nested dataclasses).

    recipe = validate(yaml.safe_load(text), Recipe, source="recipes/kd.yaml")

Every problem is collected first (unknown keys with a suggestion, wrong types, missing keys,
out-of-range numbers, a section's own `check()`), then raised as one PotstillError that lists
them all, each with its full key path. Whatever the schema says, no number read is NaN, infinite
or an integer beyond 64 bits (`numbers.number_problem`), also inside values typed `Any`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Mapping
from typing import Any

from potstill.config.describe import short_yaml_words, type_words, value_words
from potstill.config.numbers import INT64_MAX, INT64_MIN, bad_numbers, number_problem
from potstill.config.schema import (
    NONE_TYPE,
    container_kind,
    is_literal,
    is_required,
    is_schema,
    is_union,
    is_variadic_tuple,
    item_types,
    join,
    key_paths,
    schema_fields,
)
from potstill.errors import PotstillError, did_you_mean, nearest

# PyYAML's own loader (YAML 1.1) reads `1e-3` as the *string* '1e-3': a float needs a dot and a
# signed exponent. Float fields accept such strings when they are plain number literals.
FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
SCALARS = (bool, int, float, str)
YAML11_BOOLS = ("yes", "no", "on", "off", "y", "n")  # booleans in YAML 1.1, text in recipes (see safe_yaml)
MOST_SUGGESTIONS = 3
MOST_LISTED = 20  # problems listed in one message; the rest are only counted
LONGEST_LINE = 300  # characters of one problem line (a pasted 100 kB key is cut)
LONGEST_GUESSED = 100  # keys longer than this get no "did you mean" (difflib's cost grows with length)

_BAD = object()  # stands for a value that could not be built; its problem is already reported


def validate(data: Any, schema: type, *, source: str = "recipe") -> Any:
    """Build a `schema` instance from plain YAML data, or raise one PotstillError listing every
    problem as `path: message`. `source` (a file name) starts the message.

    Field types: bool, int, float (also takes ints and number text such as '1e-3'), str, Any,
    Literal[...], Optional/Union of these, list[X], tuple[X, ...], tuple[X, Y], dict[K, V] and
    nested dataclasses (given as mappings). Field metadata: "help" (for `reference`), "min" and
    "max" (inclusive bounds). Whatever the type, numbers must be finite and integers fit in 64
    bits. A dataclass may define `check(self) -> list[str]` returning "field: message" problems;
    it runs once all of its fields built and are in range.
    """
    if not is_schema(schema):
        raise TypeError(f"validate() needs a dataclass schema, got {schema!r}")
    builder = _Builder(schema)
    instance = builder.convert(data, schema, "")
    if builder.problems:
        raise PotstillError(format_problems(source, builder.problems))
    return instance


def format_problems(source: str, problems: list[tuple[str, str]]) -> str:
    """One line for one problem; a counted bullet list for several (the first MOST_LISTED)."""
    lines = [_cut(f"{path}: {message}" if path else message) for path, message in problems[:MOST_LISTED]]
    if len(problems) == 1:
        return f"{source}: {lines[0]}"
    more = len(problems) - len(lines)
    return (
        f"{source} has {len(problems)} problems:\n"
        + "\n".join(f"  - {line}" for line in lines)
        + (f"\n  ... and {more} more" if more else "")
    )


def _cut(line: str) -> str:
    return line if len(line) <= LONGEST_LINE else line[: LONGEST_LINE - 3] + "..."


def to_dict(instance: Any) -> dict[str, Any]:
    """A schema instance as plain data (dicts, lists, scalars) ready for `yaml.safe_dump`.

    Tuples become lists; `validate(to_dict(x), type(x)) == x`.
    """
    if not dataclasses.is_dataclass(instance) or isinstance(instance, type):
        raise TypeError(f"to_dict() needs a dataclass instance, got {instance!r}")
    return {field.name: _plain(getattr(instance, field.name)) for field in dataclasses.fields(instance) if field.init}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class _Builder:
    """Walks data and schema together, converting values and collecting (path, message) problems."""

    def __init__(self, root: type) -> None:
        self.root = root
        self.problems: list[tuple[str, str]] = []

    def report(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def convert(self, value: Any, tp: Any, path: str) -> Any:
        """The value converted to `tp` (float text -> float, list -> tuple, mapping -> dataclass),
        or _BAD after reporting why not."""
        if tp is Any:  # args passed on to a constructor: only the numbers in them are checked
            problems = list(bad_numbers(value, path))
            for problem_path, message in problems:
                self.report(problem_path, message)
            return _BAD if problems else value
        if is_union(tp):
            return self.convert_union(value, tp, path)
        if is_literal(tp):
            return self.convert_literal(value, tp, path)
        if is_schema(tp):
            return self.build(value, tp, path)
        kind = container_kind(tp)
        if kind == "dict":
            return self.convert_dict(value, tp, path)
        if kind is not None:
            return self.convert_sequence(value, tp, path)
        if tp in SCALARS or tp is NONE_TYPE:
            return self.convert_scalar(value, tp, path)
        raise TypeError(f"recipe schema {self.root.__name__}: unsupported type {tp!r} at '{path}'")

    def mismatch(self, value: Any, tp: Any, path: str) -> Any:
        self.report(path, f"expected {type_words(tp, article=True)}, got {value_words(value)}{_hint(value, tp)}")
        return _BAD

    def convert_scalar(self, value: Any, tp: type, path: str) -> Any:
        if not _fits(value, tp, strict=False):
            return self.mismatch(value, tp, path)
        if tp is not float:
            return value  # integers are bounded by check_range, which knows the key's own bounds
        number = _to_float(value)
        if not math.isfinite(number):  # NaN would pass any min/max check: it compares False with everything
            self.report(path, f"must be a finite number, got {short_yaml_words(value)}")
            return _BAD
        return number

    def convert_literal(self, value: Any, tp: Any, path: str) -> Any:
        if not _fits(value, tp, strict=False):
            return self.mismatch(value, tp, path)
        return value

    def convert_union(self, value: Any, tp: Any, path: str) -> Any:
        # Prefer a member the value already is (2 stays int in Union[float, int]), then convert.
        for strict in (True, False):
            for member in typing.get_args(tp):
                if _fits(value, member, strict):
                    return self.convert(value, member, path)
        return self.mismatch(value, tp, path)

    def convert_sequence(self, value: Any, tp: Any, path: str) -> Any:
        if not isinstance(value, (list, tuple)):
            return self.mismatch(value, tp, path)
        if container_kind(tp) == "list" or is_variadic_tuple(tp):
            types = [item_types(tp)[0]] * len(value)
        elif len(value) == len(item_types(tp)):
            types = list(item_types(tp))
        else:
            return self.mismatch(value, tp, path)
        items = [self.convert(item, item_tp, f"{path}[{i}]") for i, (item, item_tp) in enumerate(zip(value, types))]
        if any(item is _BAD for item in items):
            return _BAD
        return items if container_kind(tp) == "list" else tuple(items)

    def convert_dict(self, value: Any, tp: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            return self.mismatch(value, tp, path)
        key_tp, value_tp = item_types(tp)
        converted = {}
        for key, item in value.items():
            key_path = join(path, str(key))
            converted[self.convert(key, key_tp, key_path)] = self.convert(item, value_tp, key_path)
        if _BAD in converted or any(item is _BAD for item in converted.values()):
            return _BAD
        return converted

    def build(self, value: Any, schema: type, path: str) -> Any:
        """A dataclass from a mapping; its `check()` runs only when every field built."""
        if not isinstance(value, Mapping):
            return self.mismatch(value, schema, path)
        fields = {field.name: (field, tp) for field, tp in schema_fields(schema)}
        arguments: dict[str, Any] = {}
        complete = True
        for key, item in value.items():
            key_path = join(path, str(key))
            if key not in fields:
                self.report(key_path, "unknown key" + self.suggest_key(str(key), path, list(fields)))
                continue
            field, tp = fields[key]
            converted = self.convert(item, tp, key_path)
            if converted is _BAD:
                complete = False
                continue
            reported = len(self.problems)
            self.check_range(converted, field, key_path)
            if len(self.problems) > reported:  # out of range: check() would only see a wrong value
                complete = False
                continue
            arguments[key] = converted
        for name, (field, _) in fields.items():
            if name not in value and is_required(field):
                self.report("", f"missing required key '{join(path, name)}'")
                complete = False
        if not complete:
            return _BAD
        return self.construct(schema, arguments, path)

    def construct(self, schema: type, arguments: dict[str, Any], path: str) -> Any:
        try:
            instance = schema(**arguments)
        except (ValueError, PotstillError) as error:  # raised by the schema's __post_init__
            self.report(path, str(error))
            return _BAD
        if callable(getattr(schema, "check", None)):
            for message in instance.check() or []:
                field_path, text = _split_check_message(message)
                self.report(join(path, field_path), text)
        return instance

    def suggest_key(self, key: str, path: str, siblings: list[str]) -> str:
        """' (did you mean ...)' naming the closest sibling, else the closest key anywhere."""
        if len(key) > LONGEST_GUESSED or len(self.problems) >= MOST_LISTED:  # not shown, or not worth it
            return ""
        everywhere = [p for p in key_paths(self.root) if "[" not in p and "<" not in p]
        if "." in key:  # a dotted key written flat, e.g. `distill.temprature: 2` at the top level
            return did_you_mean(join(path, key), everywhere)
        guess = nearest(key, siblings)
        if guess is not None:
            return f" (did you mean '{join(path, guess)}'?)"
        last_words = {p.rsplit(".", 1)[-1] for p in everywhere}
        guess = nearest(key, sorted(last_words))
        if guess is None:
            return ""
        matches = [p for p in everywhere if p.rsplit(".", 1)[-1] == guess][:MOST_SUGGESTIONS]
        return " (did you mean " + " or ".join(f"'{p}'" for p in matches) + "?)"

    def check_range(self, value: Any, field: dataclasses.Field, path: str) -> None:
        """Inclusive bounds from `field(metadata={"min": ..., "max": ...})`, also per item of a list
        or mapping. An integer must also fit in 64 bits where the field sets no bound of its own."""
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                self.check_range(item, field, f"{path}[{i}]")
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                self.check_range(item, field, join(path, str(key)))
            return
        if not _is_number(value):
            return
        low, high = field.metadata.get("min"), field.metadata.get("max")
        if isinstance(value, int) and ((low is None and value < INT64_MIN) or (high is None and value > INT64_MAX)):
            self.report(path, str(number_problem(value)))
            return
        shown = short_yaml_words(value)
        if low is not None and high is not None and not low <= value <= high:
            self.report(path, f"must be between {low} and {high}, got {shown}")
        elif low is not None and high is None and value < low:
            self.report(path, f"must be at least {low}, got {shown}")
        elif high is not None and low is None and value > high:
            self.report(path, f"must be at most {high}, got {shown}")


def _to_float(value: Any) -> float:
    """A number or number text as a float; infinite when it is beyond the float range."""
    try:
        return float(value)
    except OverflowError:  # an integer of more than ~308 digits
        return math.inf if value > 0 else -math.inf


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fits(value: Any, tp: Any, strict: bool) -> bool:
    """Whether `value` has the outer shape of `tp`; `strict` refuses conversions (int -> float)."""
    if tp is Any:
        return True
    if tp is NONE_TYPE:
        return value is None
    if is_union(tp):
        return any(_fits(value, member, strict) for member in typing.get_args(tp))
    if is_literal(tp):
        return any(value == option and type(value) is type(option) for option in typing.get_args(tp))
    if is_schema(tp) or container_kind(tp) == "dict":
        return isinstance(value, Mapping)
    if container_kind(tp) is not None:
        return isinstance(value, (list, tuple))
    if tp is float:
        if strict:
            return isinstance(value, float)
        return _is_number(value) or (isinstance(value, str) and FLOAT_TEXT.fullmatch(value) is not None)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _hint(value: Any, tp: Any) -> str:
    """A likely fix for a wrong value: quoting, dropping '.0', or the nearest allowed word."""
    members = typing.get_args(tp) if is_union(tp) else (tp,)
    if bool in members and isinstance(value, str) and value.lower() in YAML11_BOOLS:
        return " (recipes read only true and false as booleans; write true or false)"
    if str in members and isinstance(value, (bool, int, float)):
        return " (put it in quotes to make it a string)"
    if int in members and isinstance(value, float) and value.is_integer():
        return f" (write {int(value)} without the decimal point)"
    words = [option for member in members if is_literal(member) for option in typing.get_args(member)]
    if isinstance(value, str):
        return did_you_mean(value, [option for option in words if isinstance(option, str)])
    return ""


def _split_check_message(message: str) -> tuple[str, str]:
    """'alpha: must be > 0' -> ('alpha', 'must be > 0'); a message without a key path stays whole."""
    head, separator, text = message.partition(": ")
    if separator and head and " " not in head:
        return head, text
    return "", message
