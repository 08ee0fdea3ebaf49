"""Name -> constructor registries for models, losses, datasets and schedules.

    MODELS = Registry("model")

    @MODELS.register("mlp")
    def mlp(input_shape, num_classes, hidden=(1024, 1024)): ...

    MODELS.create("mlp", input_shape=(1, 28, 28), num_classes=10, hidden=[64])

Duplicate names are errors (not warnings); unknown names and unknown keyword arguments raise a
PotstillError that suggests the nearest valid name. `create` refuses NaN, infinities and integers
beyond 64 bits in any keyword argument (nested lists and mappings too), for every registry: a NaN
hyperparameter passes every `x > 0` check a constructor could make and trains to nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from potstill.config.numbers import bad_numbers
from potstill.errors import PotstillError, did_you_mean

T = TypeVar("T", bound=Callable[..., Any])


class Registry:
    """A named collection of constructors (functions or classes)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(constructor: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered by {self._entries[name]!r}")
            self._entries[name] = constructor
            return constructor

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise PotstillError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self.names())}; "
                f"registered {self.kind}s: {', '.join(self.names())}"
            )
        return self._entries[name]

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The keyword arguments a constructor accepts (its signature is its config)."""
        constructor = self.get(name)
        target = constructor.__init__ if inspect.isclass(constructor) else constructor
        params = dict(inspect.signature(target).parameters)
        params.pop("self", None)
        return {k: p for k, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def check_kwargs(self, name: str, kwargs: dict[str, Any], where: str = "", reserved: tuple[str, ...] = ()) -> None:
        """Raise a PotstillError naming every keyword `name` does not accept; `reserved`: accepted
        by the constructor but set by potstill, so neither suggested nor listed."""
        accepted = {key: value for key, value in self.parameters(name).items() if key not in reserved}
        unknown = [k for k in kwargs if k not in accepted]
        if unknown:
            location = f" in {where}" if where else ""
            problems = "; ".join(f"'{k}'{did_you_mean(k, list(accepted))}" for k in unknown)
            raise PotstillError(
                f"{self.kind} '{name}' does not accept {problems}{location}; "
                f"it accepts: {', '.join(accepted) or 'no arguments'}"
            )

    def check_numbers(self, name: str, kwargs: dict[str, Any]) -> None:
        """Raise a PotstillError naming every NaN, infinite or beyond-64-bit number in `kwargs`."""
        problems = [f"{path} {message}" for path, message in bad_numbers(kwargs, "")]
        if problems:
            raise PotstillError(f"{self.kind} '{name}': {'; '.join(problems)}")

    def create(self, name: str, /, **kwargs: Any) -> Any:
        self.check_kwargs(name, kwargs)
        self.check_numbers(name, kwargs)
        try:
            return self.get(name)(**kwargs)
        except TypeError as error:  # wrong value type for an accepted argument
            raise PotstillError(f"cannot build {self.kind} '{name}' with {kwargs}: {error}") from error

    def describe(self, name: str) -> str:
        """First line of the constructor's docstring."""
        doc = inspect.getdoc(self.get(name)) or ""
        return doc.splitlines()[0] if doc else ""
