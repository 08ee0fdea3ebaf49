"""In-memory datasets: images as one tensor, labels as another.

Everything potstill trains on fits in memory as batched tensors (Fashion-MNIST is 47 MB as
uint8), so batches are slices and augmentation runs on whole batches, never per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from potstill.errors import PotstillError


@dataclass
class ArrayData:
    """Images (N, C, H, W) as uint8 in [0, 255] or float in [0, 1], labels (N,) int64."""

    inputs: torch.Tensor
    targets: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        if self.inputs.ndim != 4:
            raise PotstillError(f"images must have shape (N, C, H, W), got {tuple(self.inputs.shape)}")
        if self.targets.ndim != 1 or len(self.targets) != len(self.inputs):
            raise PotstillError(
                f"labels must have shape ({len(self.inputs)},) to match the images, got {tuple(self.targets.shape)}"
            )
        self.targets = self.targets.long()
        if len(self.targets) and (self.targets.min() < 0 or self.targets.max() >= self.num_classes):
            raise PotstillError(
                f"labels range over {int(self.targets.min())}..{int(self.targets.max())} but the data declares "
                f"{self.num_classes} classes (0..{self.num_classes - 1}); fix the labels or num_classes"
            )

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.inputs.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: torch.Tensor) -> ArrayData:
        return ArrayData(self.inputs[indices], self.targets[indices], self.num_classes)

    def as_float(self) -> torch.Tensor:
        """Images scaled to [0, 1] as float32 (N, C, H, W)."""
        return to_unit_float(self.inputs)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


@dataclass
class DataSplits:
    """Train / validation / test splits plus the normalisation measured on the training split."""

    name: str
    train: ArrayData
    val: ArrayData | None
    test: ArrayData
    mean: tuple[float, ...]
    std: tuple[float, ...]
    notes: list[str] = field(default_factory=list)  # how the splits were made, for the run's record

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.train.input_shape

    def describe(self) -> dict:
        return {
            "dataset": self.name,
            "train": len(self.train),
            "val": len(self.val) if self.val is not None else 0,
            "test": len(self.test),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "normalisation": {"mean": list(self.mean), "std": list(self.std), "measured_on": "train split"},
            "notes": self.notes,
        }


def channel_stats(data: ArrayData, chunk: int = 10_000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the [0, 1]-scaled images, computed in chunks to bound memory."""
    total = torch.zeros(data.input_shape[0], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    count = 0
    for start in range(0, len(data), chunk):
        x = to_unit_float(data.inputs[start : start + chunk]).double()  # (n, C, H, W)
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
