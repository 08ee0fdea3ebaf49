"""Data given to the Python API: images (arrays or tensors, ArrayData), token ids (TokenData or a
dict) and language-model rows (LMData), checked against themselves and the models, then wrapped
as the run's splits (a Workbench). api.py holds the calls; this file what they are given."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from potstill.data import ArrayData, make_splits
from potstill.data.arrays import as_tensor, to_unit_float
from potstill.data.lm import LMData
from potstill.data.registry import RawData
from potstill.data.tokens import TokenData
from potstill.errors import PotstillError
from potstill.model_io import field_of
from potstill.recipe import Recipe
from potstill.workbench import Workbench, dry_run, resolve_device

Data = Union[ArrayData, tuple[torch.Tensor, torch.Tensor], tuple[np.ndarray, np.ndarray], TokenData, dict]
TEXT_KEYS = ("input_ids", "attention_mask", "labels")  # text from Python as a dict of arrays


@dataclass
class Given:
    """One split as the caller gave it: images as the models see them (N, C, H, W), labels, and
    the shape the caller passed (to name it in errors)."""

    role: str  # "train_data" or "test_data"
    images: torch.Tensor
    labels: torch.Tensor
    given_shape: tuple[int, ...]
    data: ArrayData | None  # the caller's ArrayData, used as is

    @property
    def flat(self) -> bool:
        return len(self.given_shape) == 2

    def describe(self) -> str:
        """'train_data samples of shape (64,) (given as (N, 64), passed to models as (N, 1, 1, 64))'."""
        sample = tuple(self.given_shape[1:])
        if not self.flat:
            return f"{self.role} samples of shape {sample}"
        return (f"{self.role} samples of shape {sample} (given as (N, {sample[0]}), passed to models as "
                f"(N, 1, 1, {sample[0]}))")

    def as_array_data(self, num_classes: int) -> ArrayData:
        if self.data is not None:
            return self.data
        return ArrayData(self.images, self.labels, num_classes, split=self.role)


def given(data: Data, role: str) -> Given:
    """Read one split: an ArrayData, or a pair (images, labels) of tensors or numpy arrays.

    numpy arrays are wrapped with torch.from_numpy (no copy) and nothing the caller passed is ever
    modified. Flat features (N, D) are shown to models as (N, 1, 1, D) (a view); if a model cannot
    take that, the error says so and suggests a reshape.
    """
    if isinstance(data, ArrayData):
        images, labels, shape = data.inputs, data.targets, tuple(data.inputs.shape)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = as_tensor(data[0], f"the {role} images"), as_tensor(data[1], f"the {role} labels")
        shape = tuple(images.shape)
        if images.ndim == 2:  # flat features (N, D) -> (N, 1, 1, D)
            images = images[:, None, None, :]
        elif images.ndim != 4:
            one_channel = ": for one channel pass x.unsqueeze(1)" if images.ndim == 3 else ""
            raise PotstillError(
                f"the {role} images have shape {shape}; potstill needs (N, C, H, W) or flat (N, D){one_channel}"
            )
    else:
        raise PotstillError(
            f"{role} must be a potstill.ArrayData or a pair (images, labels) of tensors or numpy arrays, "
            f"got {type(data).__name__}"
        )
    if len(images) == 0:
        raise PotstillError(
            f"{role} holds no samples (images of shape {shape}); pass at least one sample: "
            + ("potstill trains on it" if role == "train_data" else "potstill measures every model on it")
        )
    return Given(role, images, labels, shape, data if isinstance(data, ArrayData) else None)


def reshape_hint(features: int) -> str:
    """'x.reshape(-1, 1, 8, 8)' for 64 features: the square image shapes a flat vector could be."""
    hints = []
    for channels in (1, 3):
        side = math.isqrt(features // channels)
        if features % channels == 0 and side * side * channels == features:
            hints.append(f"x.reshape(-1, {channels}, {side}, {side})")
    return " or ".join(hints) or "x.reshape(-1, C, H, W)"


def probe(model: nn.Module, role: str, data: Given, device: torch.device) -> torch.Tensor:
    """One forward pass on two samples: the model must take the data and return (B, K) logits."""
    held = data.data.image_fields if data.data is not None else ("input",)
    if field_of(model) not in held:  # a teacher made to read another modality (cross-modal)
        raise PotstillError(
            f"the {role} reads `{field_of(model)}` but {data.role} has only {', '.join(held)}; pass paired data as "
            "potstill.ArrayData(images, labels, num_classes, teacher_inputs=...) for train_data and test_data"
        )
    sample = to_unit_float(data.images[:2]).to(device)  # (B, C, H, W)
    if data.data is not None and data.data.teacher_inputs is not None:  # paired: every field by name (cross-modal)
        sample = {name: value.to(device) for name, value in data.data.fields(torch.arange(min(2, len(data.data)))).items()}
    if data.flat:
        fix = f"give the data the (N, C, H, W) shape the {role} was built for, e.g. {reshape_hint(data.given_shape[1])}"
    else:
        fix = (f"give the data the shape the {role} was built for, "
               f"or build the {role} for input_shape={tuple(data.images.shape[1:])}")
    return dry_run(model, role, sample, data.describe(), fix)


def token_inputs(data: Any, role: str) -> tuple[Any, Any, Any]:
    """(input_ids, attention_mask, labels) of text given from Python: a TokenData, or a dict of
    input_ids and attention_mask (N, L) and labels (N,), arrays or tensors."""
    if isinstance(data, TokenData):
        return data.input_ids, data.attention_mask, data.targets
    missing = [key for key in TEXT_KEYS if not isinstance(data, dict) or key not in data]
    if missing:
        raise PotstillError(f"{role} as a dict needs {', '.join(TEXT_KEYS)}; it has no {', '.join(missing)}")
    return tuple(as_tensor(data[key], f"{role} {key}") for key in TEXT_KEYS)


def token_data(data: Any, role: str, num_classes: int) -> TokenData:
    """A TokenData as is; a dict as a TokenData of `num_classes` classes, checked like a dataset's."""
    return data if isinstance(data, TokenData) else TokenData(*token_inputs(data, role), num_classes, split=role)


def text_workbench(recipe: Recipe, models: list[tuple[str, nn.Module]], train_data: Any, test_data: Any,
                   device: torch.device) -> Workbench:
    """Token ids from Python: the models fix the class count, the data is checked like a dataset's."""
    ids, mask, _ = token_inputs(train_data, "train_data")
    inputs = {"input_ids": ids[:2].long().to(device), "attention_mask": mask[:2].long().to(device)}
    classes = {role: dry_run(model.to(device), role, inputs, "train_data token ids", "pass the token ids its tokenizer makes").shape[1]
               for role, model in models}
    if len(set(classes.values())) > 1:
        raise PotstillError(f"the models predict different numbers of classes ({classes}); give all the same output size")
    num_classes = next(iter(classes.values()))
    raw = RawData(token_data(train_data, "train_data", num_classes), token_data(test_data, "test_data", num_classes))
    return wrap_splits(recipe, raw, models, device)


def wrap_splits(recipe: Recipe, raw: RawData, models: list[tuple[str, nn.Module]], device: torch.device) -> Workbench:
    """The given data as the run's splits: the given test data is the test split, the other data
    options apply; every model is checked against it."""
    spec = recipe.data
    splits = make_splits("python", raw, val_fraction=spec.val_fraction, train_size=spec.train_size, seed=spec.split_seed,
                         test_size=spec.test_size)
    bench = Workbench(splits, spec, device)
    for role, model in models:
        bench.check_model(model, role)
    return bench


def checked_workbench(recipe: Recipe, models: list[tuple[str, nn.Module]], train_data: Data,
                      test_data: Data) -> Workbench:
    """Check the data against itself and the models, then wrap it (nothing is written yet)."""
    device = resolve_device(recipe.device)
    if isinstance(train_data, LMData) or isinstance(test_data, LMData):
        if not (isinstance(train_data, LMData) and isinstance(test_data, LMData)):
            raise PotstillError("language-model data: give both train_data and test_data as potstill.LMData")
        if train_data.num_classes != test_data.num_classes:
            raise PotstillError(f"train_data has a vocabulary of {train_data.num_classes} tokens but test_data "
                                f"{test_data.num_classes}; tokenise both with one tokenizer")
        return wrap_splits(recipe, RawData(train_data, test_data), models, device)
    if isinstance(train_data, (TokenData, dict)):
        return text_workbench(recipe, models, train_data, test_data, device)
    train, test = given(train_data, "train_data"), given(test_data, "test_data")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise PotstillError(
            f"train_data samples have shape {train.given_shape[1:]} but test_data samples {test.given_shape[1:]}; "
            "give both the same per-sample shape"
        )
    classes = {}
    for role, model in models:
        classes[role] = probe(model.to(device), role, train, device).shape[1]
    if len(set(classes.values())) > 1:
        (first, first_count), (second, second_count) = classes.items()
        raise PotstillError(
            f"the {first} predicts {first_count} classes but the {second} {second_count}; "
            "give both the same output size"
        )
    num_classes = next(iter(classes.values()))
    raw = RawData(train.as_array_data(num_classes), test.as_array_data(num_classes))
    if raw.train.num_classes != raw.test.num_classes:
        raise PotstillError(
            f"train_data declares {raw.train.num_classes} classes but test_data {raw.test.num_classes}; "
            "give both ArrayData the same num_classes"
        )
    return wrap_splits(recipe, raw, models, device)
