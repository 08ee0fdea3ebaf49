"""The dataset registry. A dataset builder reads files from disk (never downloads) and returns
its official train split and, where one exists, its official test split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from potstill.data.arrays import ArrayData
from potstill.errors import PotstillError
from potstill.registry import Registry

DATASETS = Registry("dataset")


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
