"""Input preprocessing that belongs to a model, not to the data loader.

The loader hands every model the same raw inputs: the user's float arrays as they are, uint8
images scaled to [0, 1] (the one conversion potstill makes, stated in docs/guide.md). What a
model expects on top of that, `(x - mean) / std` per channel or nothing, is its preprocessing:

    none      the model sees the raw inputs (the default for a teacher checkpoint that records
              nothing: a teacher trained elsewhere is never fed inputs it has not seen)
    dataset   mean and std of this run's training split, per channel
    given     mean and std from the recipe, e.g. ImageNet's

A model's preprocessing is attached as a forward pre-hook (`attach`), so module names, taps and
`state_dict()` stay exactly the model's own; it is saved in the header of every weights file
potstill writes (`header()`) and applied again by whatever loads that file (`potstill eval`,
`potstill.load_model`), so a saved student gives its reported accuracy on raw inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from potstill.errors import PotstillError


@dataclass(frozen=True)
class Preprocessing:
    """Per-channel `(x - mean) / std`, or nothing when `mean` is None; `source` says where it came from."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str = "none"

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise PotstillError("preprocessing needs both mean and std, or neither")
        if self.mean is not None:
            if len(self.mean) != len(self.std) or not self.mean:
                raise PotstillError(f"preprocessing mean {list(self.mean)} and std {list(self.std)} need one value per channel each")
            if not all(math.isfinite(v) for v in (*self.mean, *self.std)) or min(self.std) <= 0:
                raise PotstillError(f"preprocessing std must be positive and every value finite, got mean {list(self.mean)}, std {list(self.std)}")

    @property
    def identity(self) -> bool:
        return self.mean is None

    def header(self) -> dict[str, Any]:
        """What a weights file records."""
        if self.identity:
            return {"kind": "none"}
        return {"kind": "normalise", "mean": list(self.mean), "std": list(self.std), "source": self.source}

    @classmethod
    def from_header(cls, record: Any) -> Preprocessing | None:
        """The preprocessing a weights file records, or None when it records none (not potstill's)."""
        if not isinstance(record, dict) or record.get("kind") not in ("none", "normalise"):
            return None
        if record["kind"] == "none":
            return cls(source="checkpoint")
        return cls(tuple(record["mean"]), tuple(record["std"]), "checkpoint")

    def describe(self) -> str:
        if self.identity:
            return "token ids from its tokenizer" if self.source == "tokenizer" else "none (raw inputs)"
        numbers = ", ".join(f"{m:.4g}/{s:.4g}" for m, s in zip(self.mean, self.std))
        return f"(x - mean) / std per channel, mean/std {numbers} ({self.source})"

    def check_channels(self, channels: int, role: str) -> None:
        if self.mean is not None and len(self.mean) not in (1, channels):
            raise PotstillError(
                f"{role} preprocessing has {len(self.mean)} mean/std values but the inputs have {channels} channels; "
                "give one value per channel (or one for all)"
            )


class Normalise:
    """The forward pre-hook: the first positional input becomes (x - mean) / std."""

    def __init__(self, preprocessing: Preprocessing) -> None:
        self.preprocessing = preprocessing
        self.mean = torch.tensor(preprocessing.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(preprocessing.std).view(1, -1, 1, 1)

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        if not args or not isinstance(args[0], torch.Tensor):
            return args
        x = args[0]
        if self.mean.device != x.device:  # follow the model to its device once
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return ((x - self.mean) / self.std, *args[1:])


def attach(model: nn.Module, preprocessing: Preprocessing) -> nn.Module:
    """Give `model` this preprocessing (replacing any potstill attached before); returns it."""
    detach(model)
    if not preprocessing.identity:
        model.register_forward_pre_hook(Normalise(preprocessing))
    else:
        model._potstill_raw_inputs = preprocessing  # remembers "none" and where it came from
    return model


def detach(model: nn.Module) -> None:
    """Remove what `attach` added: the model is the user's own again."""
    for key, hook in list(model._forward_pre_hooks.items()):
        if isinstance(hook, Normalise):
            del model._forward_pre_hooks[key]
    if "_potstill_raw_inputs" in model.__dict__:
        del model.__dict__["_potstill_raw_inputs"]


def attached(model: nn.Module) -> Preprocessing | None:
    """The preprocessing potstill attached to `model`, or None when it attached none."""
    for hook in model._forward_pre_hooks.values():
        if isinstance(hook, Normalise):
            return hook.preprocessing
    return model.__dict__.get("_potstill_raw_inputs")


def preprocessing_of(model: nn.Module) -> Preprocessing:
    """The preprocessing attached to `model` (none when potstill attached nothing)."""
    return attached(model) or Preprocessing()
