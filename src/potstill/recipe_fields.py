"""Building blocks of the recipe schema (recipe.py, recipe_search.py): the field helper with its
help text and limits, the name check, and the upper bounds of numbers."""

from __future__ import annotations

from dataclasses import field
from typing import Any

REQUIRED = object()  # marks a key a recipe must set

# Upper bounds: generous, yet far from where a number overflows or allocates absurdly (every
# number is also checked to be finite and every integer to fit in 64 bits, whatever its key).
SEED_MAX = 2**32 - 1  # loaders seed torch generators with seed * 1_000_003 + epoch, which must stay below 2**64
EPOCHS_MAX = 100_000  # the longest published KD runs ("patient" KD, Beyer et al. 2022) take ~10,000 epochs
BATCH_MAX = 1_000_000  # more images than one batch of any dataset potstill reads; bounds one batch's memory
LR_MAX = 10.0  # published peak lrs stay below ~5 (linear scaling: 0.1 x 8192 / 256 = 3.2); 1e300 overflows float32
WEIGHT_DECAY_MAX = 10.0  # usual values are 5e-4 (SGD) to 0.1 (AdamW); lr x decay must not overflow float32
LOSS_WEIGHT_MAX = 1e6  # the largest published loss weight is PKT's 3e4 (CRD benchmark); weight x loss stays finite
TEMPERATURE_MAX = 1000.0  # papers use 1-20; KD scales its loss by T**2, here at most 1e6
CROP_PADDING_MAX = 127  # crop offsets (0..2 x padding) are stored as bytes, so 127 is the most that is drawn correctly
ECE_BINS_MAX = 1000  # calibration papers use 10-20 bins; every bin is one pass over the test logits
LATENCY_BATCH_MAX = 65_536  # the timed CPU batch is allocated at once: 65,536 CIFAR images are 0.8 GB
LATENCY_REPEATS_MAX = 10_000  # 20 already gives a stable mean


def name_problem(key: str, value: str | None, folder: bool = False) -> list[str]:
    """["key: ..."] when a name is empty (or, for a folder name, not one folder); else []."""
    if value is None:
        return []
    if not value.strip():
        return [f"{key}: must not be empty"]
    if folder and (value in (".", "..") or any(char in value for char in "/\\\0")):
        return [f"{key}: {value!r} must be usable as one folder name: no '/', '\\' or NUL, not '.' or '..'"]
    return []


def option(default: Any = None, help: str = "", factory: Any = None, **limits: Any) -> Any:
    """A dataclass field with a help text (shown in docs) and optional min/max limits."""
    metadata = {"help": help, **limits}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    if default is REQUIRED:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)
