"""In-memory datasets: images as one tensor, labels as another.

Everything potstill trains on fits in memory as batched tensors (Fashion-MNIST is 47 MB as
uint8), so batches are slices and augmentation runs on whole batches, never per sample.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, InitVar, dataclass, field
from typing import ClassVar

import numpy as np
import torch

from potstill.errors import PotstillError


class NonFiniteData(PotstillError):
    """Images that hold NaN or +-inf; the message names the split and the first samples."""


@dataclass
class ArrayData:
    """Images (N, C, H, W) as uint8 in [0, 255] or float in [0, 1], labels (N,) integer class indices.
    `teacher_inputs` (optional, same shape as `inputs`): a second modality of the same samples,
    paired row by row, that batches carry as `teacher_input` (cross-modal distillation: the teacher
    reads it, the student reads `input`; docs/cross-modal.md).

    Tensors or numpy arrays (numpy is wrapped with torch.from_numpy, never modified). Float images
    are checked for NaN and +-inf here, once, so that bad values are named where they enter (with
    `split` and sample indices) instead of surfacing later as a NaN loss or a mismatched cache.
    `split` ("train", "test", ...) only names the data in error messages.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    num_classes: int
    _: KW_ONLY
    split: str = ""
    teacher_inputs: torch.Tensor | None = None
    known_finite: InitVar[bool] = False  # a subset of checked data: skip the NaN/inf pass
    modality: ClassVar[str] = "image"

    def __post_init__(self, known_finite: bool) -> None:
        where = f"the {self.split} " if self.split else "the "
        self.inputs = as_tensor(self.inputs, f"{where}images")
        self.targets = as_tensor(self.targets, f"{where}labels")
        if self.inputs.ndim != 4:
            raise PotstillError(f"{where}images must have shape (N, C, H, W), got {tuple(self.inputs.shape)}")
        if self.targets.ndim == 2 and len(self.targets) == len(self.inputs):
            raise PotstillError(
                f"{where}labels have shape {tuple(self.targets.shape)}, one row per sample (one-hot or per-class "
                f"scores?); potstill needs class indices of shape ({len(self.inputs)},): pass labels.argmax(dim=1)"
            )
        if self.targets.ndim != 1 or len(self.targets) != len(self.inputs):
            raise PotstillError(
                f"{where}labels must have shape ({len(self.inputs)},) to match the images, "
                f"got {tuple(self.targets.shape)}"
            )
        if self.targets.is_floating_point() or self.targets.is_complex():
            raise PotstillError(
                f"{where}labels are {self.targets.dtype}, but potstill needs integer class indices 0..K-1 "
                "(a float label is not rounded silently): pass labels.long() if they are whole numbers"
            )
        self.targets = self.targets.long()
        if len(self.targets) and (self.targets.min() < 0 or self.targets.max() >= self.num_classes):
            raise PotstillError(
                f"{where}labels range over {int(self.targets.min())}..{int(self.targets.max())} but the data declares "
                f"{self.num_classes} classes (0..{self.num_classes - 1}); fix the labels or num_classes"
            )
        if self.teacher_inputs is not None:
            self.teacher_inputs = as_tensor(self.teacher_inputs, f"{where}teacher inputs")
            if tuple(self.teacher_inputs.shape) != tuple(self.inputs.shape):
                raise PotstillError(
                    f"{where}teacher inputs have shape {tuple(self.teacher_inputs.shape)} but the images "
                    f"{tuple(self.inputs.shape)}; a paired modality needs one row per image and the same (C, H, W) "
                    "(resize or pad one modality to the other's shape)"
                )
        if not known_finite:
            check_finite(self.inputs, f"{where}images")
            if self.teacher_inputs is not None:
                check_finite(self.teacher_inputs, f"{where}teacher inputs")

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.inputs.shape[1:])  # type: ignore[return-value]

    @property
    def image_fields(self) -> tuple[str, ...]:
        """The batch fields holding images, each shown in the same view: input (+ teacher_input)."""
        return ("input",) if self.teacher_inputs is None else ("input", "teacher_input")

    def images_of(self, field: str) -> torch.Tensor:
        """The stored images (N, C, H, W) a batch field comes from."""
        if field not in self.image_fields:
            raise PotstillError(f"the data has no field `{field}`; it holds {', '.join(self.image_fields)}")
        return self.inputs if field == "input" else self.teacher_inputs

    def subset(self, indices: torch.Tensor) -> ArrayData:
        paired = None if self.teacher_inputs is None else self.teacher_inputs[indices]
        return ArrayData(
            self.inputs[indices], self.targets[indices], self.num_classes, split=self.split, teacher_inputs=paired,
            known_finite=True,
        )

    def fields(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model inputs of rows `index`: {"input": (B, C, H, W) float in [0, 1] (uint8 scaled)},
        and `teacher_input` the same way for paired data."""
        return {field: to_unit_float(self.images_of(field)[index]) for field in self.image_fields}

    def example(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Random images (B, C, H, W) for timing a model (the values do not change its cost)."""
        return {field: torch.randn(batch_size, *self.input_shape, generator=generator) for field in self.image_fields}

    def content(self) -> dict[str, torch.Tensor]:
        """What the samples are, by name (a cache fingerprints it): both modalities of paired data."""
        paired = {} if self.teacher_inputs is None else {"teacher_inputs": self.teacher_inputs}
        return {"inputs": self.inputs} | paired

    def to(self, device: torch.device | str) -> ArrayData:
        """The same data with its tensors on `device`."""
        paired = None if self.teacher_inputs is None else self.teacher_inputs.to(device)
        return ArrayData(self.inputs.to(device), self.targets.to(device), self.num_classes, split=self.split,
                         teacher_inputs=paired, known_finite=True)

    def as_float(self) -> torch.Tensor:
        """Images scaled to [0, 1] as float32 (N, C, H, W)."""
        return to_unit_float(self.inputs)


def as_tensor(value, what: str) -> torch.Tensor:
    """A tensor as is; a numpy array wrapped without copying (copied only when read-only)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise PotstillError(f"{what} are a numpy array of Python objects; convert them to a numeric array first")
        return torch.from_numpy(value if value.flags.writeable else value.copy())
    raise PotstillError(f"{what} must be a torch.Tensor or a numpy array, got {type(value).__name__}")


def check_finite(images: torch.Tensor, what: str, chunk_elements: int = 1 << 24, shown: int = 5) -> None:
    """Raise NonFiniteData naming the first samples of `images` (N, ...) that hold NaN or +-inf.

    Chunks of about `chunk_elements` values bound the extra memory. A chunk whose sum is finite
    holds no NaN or inf (either would make the sum non-finite), so the per-sample torch.isfinite
    pass runs only on chunks whose sum is not (a bad value, or a rare overflow of the sum).
    """
    if not images.is_floating_point() or images.numel() == 0:
        return  # integer images (uint8) cannot hold NaN or inf
    accumulate = torch.float64 if images.dtype == torch.float64 else torch.float32
    rows = max(1, chunk_elements // max(1, images[0].numel()))
    found = []
    for start in range(0, len(images), rows):
        chunk = images[start : start + rows]  # (n, C, H, W)
        if bool(torch.isfinite(chunk.sum(dtype=accumulate))):
            continue
        finite = torch.isfinite(chunk).flatten(1).all(dim=1)  # (n,)
        if not bool(finite.all()):
            found.append(torch.nonzero(~finite).flatten() + start)
    if not found:
        return
    bad = torch.cat(found)
    named = ", ".join(f"{int(index)} ({nonfinite_kinds(images[index])})" for index in bad[:shown])
    more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
    samples = "sample" if len(bad) == 1 else "samples"
    raise NonFiniteData(
        f"{what} hold non-finite values in {len(bad)} of {len(images)} samples: {samples} {named}{more}; "
        "potstill cannot learn from or measure on them. Repair or drop those samples before passing the data "
        "(e.g. keep = torch.isfinite(x).flatten(1).all(1); x, y = x[keep], y[keep])"
    )


def nonfinite_kinds(sample: torch.Tensor) -> str:
    kinds = [("NaN", torch.isnan(sample)), ("+inf", torch.isposinf(sample)), ("-inf", torch.isneginf(sample))]
    return ", ".join(name for name, mask in kinds if bool(mask.any()))


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


@dataclass
class DataSplits:
    """Train / validation / test splits plus per-channel statistics of the training split (what
    the `dataset` preprocessing normalises with)."""

    name: str
    train: ArrayData
    val: ArrayData | None
    test: ArrayData
    mean: tuple[float, ...]
    std: tuple[float, ...]
    notes: list[str] = field(default_factory=list)  # how the splits were made, for the run's record

    def __post_init__(self) -> None:
        splits = [("train", self.train), ("val", self.val), ("test", self.test)]
        fields = {name: getattr(split, "image_fields", ()) for name, split in splits if split is not None}
        if len(set(fields.values())) > 1:
            found = "; ".join(f"{name}: {', '.join(held)}" for name, held in fields.items())
            raise PotstillError(
                f"{self.name}: the splits carry different fields ({found}); give teacher_inputs for every split of "
                "paired data, or for none"
            )

    def statistics(self, field: str = "input") -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of one image field of the training split (`dataset` preprocessing
        of a model that reads it): `input`'s are `mean`/`std`, a paired field's are measured here."""
        if field == "input":
            return self.mean, self.std
        return channel_stats(self.train, field=field)

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def task(self) -> str:
        """What the labels ask (potstill.engine.tasks): class indices (images, text topics) or next tokens."""
        return getattr(self.train, "task", "classification")

    @property
    def modality(self) -> str:
        """image or text: which losses and models the data suits."""
        return self.train.modality

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.train.input_shape

    def example_batch(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Model inputs of one batch for timing: random images, or the data's own rows (tokens)."""
        return self.train.example(batch_size, generator)

    def describe(self) -> dict:
        return {
            "dataset": self.name,
            "train": len(self.train),
            "val": len(self.val) if self.val is not None else 0,
            "test": len(self.test),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            # used by models whose preprocessing is `dataset`; each model's own is in its summary row
            "statistics": {"mean": list(self.mean), "std": list(self.std), "measured_on": "train split"},
            "notes": self.notes,
        } | ({"fields": list(self.train.image_fields)} if len(getattr(self.train, "image_fields", ())) > 1 else {})


def channel_stats(data: ArrayData, chunk: int = 10_000,
                  field: str = "input") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the [0, 1]-scaled images of one field, in chunks to bound memory."""
    images = data.images_of(field)
    total = torch.zeros(data.input_shape[0], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    count = 0
    for start in range(0, len(data), chunk):
        x = to_unit_float(images[start : start + chunk]).double()  # (n, C, H, W)
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(float(m) for m in mean), tuple(max(float(s), 1e-6) for s in std)


def stratified_split(targets: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices so each class keeps `fraction` of its samples in the second part."""
    generator = torch.Generator().manual_seed(seed)
    keep, held = [], []
    for label in torch.unique(targets):
        members = torch.nonzero(targets == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_held = int(round(len(members) * fraction))
        held.append(members[:n_held])
        keep.append(members[n_held:])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values
