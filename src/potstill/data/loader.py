"""Batches from in-memory tensors, with augmentation done on the whole batch.

Shuffling and augmentation draw from generators seeded by (seed, epoch), so an epoch's batches
are the same whether a run was interrupted or not: that is what makes resume exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from potstill.data.arrays import ArrayData
from potstill.data.views import apply_view, draw_params

if TYPE_CHECKING:
    from potstill.data.tokens import TokenData

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Augment:
    """Random horizontal flip (p = 0.5) and random crop after zero padding, per sample."""

    hflip: bool = False
    crop_padding: int = 0

    @property
    def active(self) -> bool:
        return self.hflip or self.crop_padding > 0

    def draw(self, count: int, generator: torch.Generator, device=None) -> torch.Tensor:
        """Fresh view parameters (count, 3) for one batch."""
        return draw_params(count, self.hflip, self.crop_padding, generator, device)

    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return apply_view(images, params, self.hflip, self.crop_padding)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # images: (B, C, H, W) float in [0, 1]
        return self.apply(images, self.draw(images.shape[0], generator, images.device))


class BatchLoader:
    """Iterates over data held on `device` in batches: a dict of named tensors, the data's model
    inputs (`data.fields`) plus `target` (B,) and `index` (B,) = sample indices. Images
    (ArrayData) give `input` (B, C, H, W): uint8 scaled to [0, 1], float as it is; token data
    gives `input_ids` and `attention_mask` (B, L). Normalisation belongs to each model
    (potstill.preprocess), not to the loader; `mean`/`std` normalise images here only when given.

    With a view bank (N, V, 3) (see `potstill.data.views`) each sample shows one of its V stored
    views per epoch, chosen at random, and the batch also holds `view` (B,): which one.
    Augmentation (flips, crops) applies to images only.

    `shard` = (rank, world size): under torchrun each process takes its part of every global batch
    (rank r: the r-th of `world size` contiguous parts, sizes differing by at most one), after the
    order and the augmentation were drawn for the whole batch, so the processes together see
    exactly the batches one process would. `share(step)` weights a part's mean loss accordingly.
    """

    def __init__(
        self,
        data: ArrayData | TokenData,
        batch_size: int,
        *,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        augment: Augment | None = None,
        shuffle: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
        views: torch.Tensor | None = None,
        channels_last: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.batch_size = batch_size
        self.rank, self.world_size = shard
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.augment = augment if augment is not None and augment.active else None
        self.device = torch.device(device)
        self.data = data.to(self.device)
        self.targets = self.data.targets
        self.mean = None if mean is None else torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = None if std is None else torch.tensor(std, device=self.device).view(1, -1, 1, 1)
        self.views = None if views is None else views.to(self.device)
        if self.views is not None and (self.views.ndim != 3 or len(self.views) != len(self.targets)):
            raise ValueError(f"a view bank must have shape ({len(self.targets)}, V, 3), got {tuple(self.views.shape)}")
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

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
        chosen = None
        if self.views is not None:  # one stored view per sample for this epoch
            chosen = torch.randint(self.views.shape[1], (count,), generator=generator, device=self.device)
        image = self.data.modality == "image"
        for number in range(len(self)):
            index = order[number * self.batch_size : (number + 1) * self.batch_size]  # the global batch
            drawn = None  # fresh views for the whole global batch: the generator moves as in one process
            if image and chosen is None and self.augment is not None:
                drawn = self.augment.draw(len(index), generator, self.device)
            part = self.part(len(index))
            index = index[part]
            batch: Batch = {"target": self.targets[index], "index": index}
            if chosen is not None:
                batch["view"] = chosen[index]
            batch.update(self.data.fields(index))
            if image:  # (B, C, H, W) in [0, 1]: views, augmentation, channels-last
                for name in getattr(self.data, "image_fields", ("input",)):  # a paired modality (teacher_input) gets the input's view
                    batch[name] = self.image_view(batch, None if drawn is None else drawn[part], name)
            yield batch

    def part(self, count: int) -> slice:
        """This rank's slice of a global batch of `count` samples (all of it in one process)."""
        size, extra = divmod(count, self.world_size)
        start = self.rank * size + min(self.rank, extra)
        return slice(start, start + size + (self.rank < extra))

    def share(self, step: int) -> float:
        """This rank's part of step `step`'s global batch, as a fraction of the batch times the world
        size: 1.0 in one process and whenever the parts are equal. The training loop scales the part's
        mean loss by it, so the gradients averaged over ranks are the global batch's mean gradient."""
        count = min(self.batch_size, len(self.targets) - step * self.batch_size)
        part = self.part(count)
        return self.world_size * (part.stop - part.start) / count

    def image_view(self, batch: Batch, drawn: torch.Tensor | None, name: str = "input") -> torch.Tensor:
        """`drawn`: this part's freshly drawn view parameters (None with a view bank or no augmentation);
        `name`: the image field shown in that view."""
        images = batch[name]
        if "view" in batch:
            if self.augment is not None:
                images = self.augment.apply(images, self.views[batch["index"], batch["view"]])
        elif drawn is not None:
            images = self.augment.apply(images, drawn)
        if self.mean is not None:
            images = (images - self.mean) / self.std
        return images.contiguous(memory_format=self.memory_format)
