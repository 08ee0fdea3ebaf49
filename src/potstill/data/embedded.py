"""Datasets that need no files: scikit-learn's embedded digits, and a synthetic set for tests."""

from __future__ import annotations

import torch

from potstill.data.arrays import ArrayData
from potstill.data.registry import DATASETS, RawData
from potstill.errors import PotstillError


@DATASETS.register("digits")
def digits() -> RawData:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), embedded in the package."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)  # (1797, 1, 8, 8) in [0, 1]
    data = ArrayData(images, torch.tensor(bunch.target, dtype=torch.int64), num_classes=10)
    return RawData(data, None, ["digits from scikit-learn (UCI optdigits test part, 1797 images)"])


@DATASETS.register("synthetic")
def synthetic(
    num_samples: int = 2000,
    num_classes: int = 10,
    channels: int = 1,
    size: int = 8,
    noise: float = 0.35,
    seed: int = 1234,
) -> RawData:
    """Random class prototypes plus Gaussian noise, learnable in seconds; for tests and smoke runs."""
    if num_samples < 2 * num_classes or num_classes < 2 or size < 1 or channels < 1 or noise < 0:
        raise PotstillError(
            "synthetic needs num_samples >= 2*num_classes, num_classes >= 2, size >= 1, channels >= 1, noise >= 0"
        )
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(num_classes, channels, size, size, generator=generator)
    labels = torch.arange(num_samples) % num_classes
    labels = labels[torch.randperm(num_samples, generator=generator)]
    noise_field = noise * torch.randn(num_samples, channels, size, size, generator=generator)
    images = (prototypes[labels] + noise_field).clamp_(0.0, 1.0)
    n_test = num_samples // 5
    train = ArrayData(images[n_test:], labels[n_test:], num_classes)
    test = ArrayData(images[:n_test], labels[:n_test], num_classes)
    return RawData(train, test, [f"synthetic prototypes + noise {noise}, seed {seed}"])
