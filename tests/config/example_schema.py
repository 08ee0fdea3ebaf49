"""A toy recipe schema shared by the config tests."""

from __future__ import annotations  # schemas below must resolve through get_type_hints

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import pytest

from potstill.config import validate
from potstill.errors import PotstillError


@dataclass
class ModelSpec:
    model: str = field(metadata={"help": "registered model name"})
    args: dict[str, Any] = field(default_factory=dict, metadata={"help": "constructor arguments"})
    checkpoint: Optional[str] = None


@dataclass
class Schedule:
    kind: Literal["constant", "linear_warmup", "early_stop"] = field(
        default="constant", metadata={"help": "shape of the weight over epochs"}
    )
    warmup_epochs: int = field(default=0, metadata={"min": 0})
    stop_epoch: Optional[int] = None

    def check(self) -> list[str]:
        if self.kind == "early_stop" and self.stop_epoch is None:
            return ["stop_epoch: is required when kind is 'early_stop'"]
        return []


@dataclass
class Distill:
    temperature: float = field(default=4.0, metadata={"help": "softmax temperature T"})
    alpha: float = field(default=0.5, metadata={"min": 0, "max": 1, "help": "weight of the KD term"})
    learning_rate: float = 1e-3
    loss_args: dict[str, Any] = field(default_factory=dict)
    layer_weights: dict[str, float] = field(default_factory=dict)
    schedule: Schedule = field(default_factory=Schedule)

    def check(self) -> list[str]:
        return ["temperature: must be > 0"] if self.temperature <= 0 else []


@dataclass
class Recipe:
    """A toy recipe."""

    name: str
    seed: int = 0
    deterministic: bool = False
    distill: Distill = field(default_factory=Distill)
    tags: list[str] = field(default_factory=list)
    hidden: tuple[int, ...] = field(default=(64, 64), metadata={"min": 1})
    image_size: tuple[int, int] = (32, 32)
    batch_size: Union[int, Literal["auto"]] = 64
    student: Optional[ModelSpec] = None
    teachers: list[ModelSpec] = field(default_factory=list)


def problems_of(data: Any, schema: type = Recipe) -> str:
    with pytest.raises(PotstillError) as caught:
        validate(data, schema)
    return str(caught.value)
