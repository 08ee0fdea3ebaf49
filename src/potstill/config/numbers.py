"""Numbers a recipe or a constructor may not be given, whatever the key: NaN, infinities and
integers beyond 64 bits.

NaN slips through every bound (`nan < 0` and `nan > 1` are both False) and turns a loss term
silently into nothing; an infinity or a 100-digit integer ends in an overflow deep inside torch.
So the validator refuses them for every number it reads, and `Registry.create` for every keyword
argument, nested lists and mappings included.

    number_problem(float("nan"))               -> "must be a finite number, got .nan"
    list(bad_numbers({"hidden": [2**70]}, "args")) -> [("args.hidden[0]", "must fit in 64 bits ...")]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from potstill.config.describe import short_yaml_words, yaml_words
from potstill.config.schema import join

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # torch's integers (sizes, seeds, indices) are 64-bit


def number_problem(value: Any) -> str | None:
    """Why `value` cannot be used as a number, or None (also for anything that is not a number)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {yaml_words(value)}"
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        return f"must fit in 64 bits (at most {INT64_MAX}), got {short_yaml_words(value)}"
    return None


def bad_numbers(value: Any, path: str, seen: set[int] | None = None) -> Iterator[tuple[str, str]]:
    """(key path, problem) for every unusable number in `value` and the lists and mappings it holds.

    A list or mapping held twice is checked once (`seen`), so data from Python that shares parts
    (ten lists of ten references to one list ...) or contains itself is walked in linear time.
    """
    seen = set() if seen is None else seen
    problem = number_problem(value)
    if problem is not None:
        yield path, problem
        return
    if not isinstance(value, (Mapping, list, tuple)) or id(value) in seen:
        return
    seen.add(id(value))
    items = value.items() if isinstance(value, Mapping) else enumerate(value)
    for key, item in items:
        yield from bad_numbers(item, join(path, str(key)) if isinstance(value, Mapping) else f"{path}[{key}]", seen)
