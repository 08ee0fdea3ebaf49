"""Datasets read from disk (never downloaded), held in memory as tensors, batched on the device."""

from __future__ import annotations

from typing import Any

import torch

from potstill.data import cifar, embedded, gguf_text, idx, paired, prompts, readers, shakespeare, text  # noqa: F401  (registers the datasets)
from potstill.data.arrays import ArrayData, DataSplits, channel_stats, stratified_split
from potstill.data.loader import Augment, BatchLoader
from potstill.data.registry import DATASETS, RawData
from potstill.errors import PotstillError

__all__ = ["DATASETS", "ArrayData", "Augment", "BatchLoader", "DataSplits", "load_dataset", "make_splits"]


def load_dataset(
    name: str,
    *,
    root: str | None = None,
    val_fraction: float = 0.0,
    test_fraction: float = 0.2,
    train_size: int | None = None,
    seed: int = 0,
    args: dict[str, Any] | None = None,
    test_size: int | None = None,
) -> DataSplits:
    """Read a registered dataset and split it.

    The official test split is used when the dataset has one; otherwise `test_fraction` of the
    data is held out (stratified, seeded). `val_fraction` of the training split is held out for
    validation, and `train_size` keeps a random (seeded) subset of what remains; `test_size` does the
same for the test split (quick runs only: fewer test images, coarser accuracy).
    """
    kwargs = dict(args or {})
    if root is not None:
        if "root" not in DATASETS.parameters(name):
            raise PotstillError(f"dataset '{name}' is built in and reads no files; remove data.root")
        kwargs["root"] = root
    raw: RawData = DATASETS.create(name, **kwargs)
    return make_splits(name, raw, val_fraction=val_fraction, test_fraction=test_fraction, train_size=train_size, seed=seed, test_size=test_size)


def make_splits(
    name: str,
    raw: RawData,
    *,
    val_fraction: float = 0.0,
    test_fraction: float = 0.2,
    train_size: int | None = None,
    seed: int = 0,
    test_size: int | None = None,
) -> DataSplits:
    notes = list(raw.notes)
    train, test = raw.train, raw.test
    if test is None:
        keep, held = split_rows(train, test_fraction, seed=10_007 + seed)
        train, test = train.subset(keep), train.subset(held)
        notes.append(f"no official test split: {len(test)} samples held out as test (stratified, split seed {seed})")
    if test.num_classes != train.num_classes or test.input_shape != train.input_shape:
        raise PotstillError(f"{name}: train and test splits differ in shape or class count")
    val = None
    if val_fraction > 0:
        keep, held = split_rows(train, val_fraction, seed=20_011 + seed)
        if len(held) == 0:  # stratified: a share under half a sample per class rounds to nothing
            raise PotstillError(f"data.val_fraction {val_fraction:g} holds out no sample of {name}'s {len(train)} training "
                                f"samples (stratified by class); raise it, e.g. to {max(0.1, round(2 / max(len(train), 1), 3)):g}")
        train, val = train.subset(keep), train.subset(held)
        notes.append(f"{len(val)} training samples held out for validation (stratified, split seed {seed})")
    if train_size is not None:
        train = random_subset(name, train, train_size, "train_size", 30_011 + seed)
        notes.append(f"training on a random subset of {train_size} samples (split seed {seed})")
    if test_size is not None:
        test = random_subset(name, test, test_size, "test_size", 40_013 + seed)
        notes.append(f"testing on a random subset of {test_size} test samples (split seed {seed})")
    mean, std = channel_stats(train) if train.modality == "image" else ((), ())  # text: no channels
    return DataSplits(name, train, val, test, mean, std, notes)


def split_rows(data, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified by class for classification; rows at random for a language model (targets (N, L))."""
    if data.targets.ndim == 1:
        return stratified_split(data.targets, fraction, seed=seed)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    held = int(round(len(data) * fraction))
    return order[held:].sort().values, order[:held].sort().values


def random_subset(name: str, data, size: int, key: str, seed: int):
    """A seeded random subset of `size` samples, kept in their original order."""
    if not 0 < size <= len(data):
        raise PotstillError(f"data.{key} must be between 1 and {len(data)} for {name}, got {size}")
    chosen = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:size]
    return data.subset(chosen.sort().values)
