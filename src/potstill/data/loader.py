"""Batches from in-memory tensors, with augmentation done on the whole batch.

Shuffling and augmentation draw from generators seeded by (seed, epoch), so an epoch's batches
are the same whether a run was interrupted or not: that is what makes resume exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from potstill.data.arrays import ArrayData, to_unit_float

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Augment:
    """Random horizontal flip (p = 0.5) and random crop after zero padding, per sample."""

    hflip: bool = False
    crop_padding: int = 0

    @property
    def active(self) -> bool:
        return self.hflip or self.crop_padding > 0

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # images: (B, C, H, W) float in [0, 1]
        if self.hflip:
            flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        if self.crop_padding > 0:
            images = random_crop(images, self.crop_padding, generator)
        return images


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` and cut an H x W window at a random offset per sample."""
    batch, channels, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    offset_y = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=images.device)
    offset_x = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=images.device)
    rows = offset_y[:, None] + torch.arange(height, device=images.device)  # (B, H)
    cols = offset_x[:, None] + torch.arange(width, device=images.device)  # (B, W)
    b = torch.arange(batch, device=images.device)[:, None, None, None]
    c = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


class BatchLoader:
    """Iterates over an ArrayData in batches of normalised float tensors on `device`.

    Each batch is a dict: `input` (B, C, H, W), `target` (B,), `index` (B,) = sample indices.
    """

    def __init__(
        self,
        data: ArrayData,
        batch_size: int,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: Augment | None = None,
        shuffle: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
    ) -> None:
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.augment = augment if augment is not None and augment.active else None
        self.device = torch.device(device)
        self.inputs = data.inputs.to(self.device)
        self.targets = data.targets.to(self.device)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        full, rest = divmod(len(self.targets), self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def batches(self, epoch: int = 0) -> Iterator[Batch]:
        generator = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + epoch)
        count = len(self.targets)
        order = (
            torch.randperm(count, generator=generator, device=self.device)
            if self.shuffle
            else torch.arange(count, device=self.device)
        )
        for number in range(len(self)):
            index = order[number * self.batch_size : (number + 1) * self.batch_size]
            images = to_unit_float(self.inputs[index])  # (B, C, H, W) in [0, 1]
            if self.augment is not None:
                images = self.augment(images, generator)
            yield {"input": (images - self.mean) / self.std, "target": self.targets[index], "index": index}
