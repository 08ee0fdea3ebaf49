"""The dataset registry. A dataset builder reads files from disk (never downloads) and returns
its official train split and, where one exists, its official test split.

Every split is an ArrayData, so a registered dataset passes the same checks as data given from
Python (label range, NaN/inf in float images); a failure is prefixed with the dataset's name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from potstill.data.arrays import ArrayData, NonFiniteData
from potstill.errors import PotstillError
from potstill.registry import Registry


class DatasetRegistry(Registry):
    """A Registry whose builders' data errors name the dataset they come from."""

    def create(self, name: str, /, **kwargs: Any) -> Any:
        try:
            return super().create(name, **kwargs)
        except NonFiniteData as error:  # raised inside the builder, where only the split is known
            raise NonFiniteData(f"dataset '{name}': {error}") from error


DATASETS = DatasetRegistry("dataset")


def dataset_task(name: str) -> str:
    """classification, or causal_lm for a language-modelling dataset (potstill.engine.tasks)."""
    return getattr(DATASETS.get(name), "task", "classification")


@dataclass
class RawData:
    train: ArrayData
    test: ArrayData | None  # None: no official test split, one is carved out of train
    notes: list[str] = field(default_factory=list)


def find_file(root: Path, stem: str, dataset: str, hint: str) -> Path:
    """Return root/stem or root/stem.gz; a missing file names where we looked and how to get it."""
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise PotstillError(f"{dataset} not found: looked for {root / stem}[.gz]; {hint}")
