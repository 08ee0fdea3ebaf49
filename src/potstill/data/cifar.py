"""CIFAR-10 and CIFAR-100 from their official *binary* distributions (Krizhevsky 2009).

The Python-version archives are pickles; potstill never unpickles files, so it reads the binary
version: CIFAR-10 `data_batch_{1..5}.bin` + `test_batch.bin` (1 label byte + 3072 pixel bytes per
record), CIFAR-100 `train.bin` + `test.bin` (coarse byte, fine byte, 3072 pixel bytes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from potstill.data.arrays import ArrayData
from potstill.data.registry import DATASETS, RawData
from potstill.errors import PotstillError

_PIXELS = 3 * 32 * 32


def read_cifar_binary(path: Path, label_bytes: int, label_offset: int, num_classes: int) -> ArrayData:
    """Read fixed-size records: `label_bytes` label bytes, then 3x32x32 pixels (channel-major)."""
    record = label_bytes + _PIXELS
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise PotstillError(f"{path} is not a CIFAR binary batch ({raw.size} bytes is not a multiple of {record})")
    rows = raw.reshape(-1, record)
    labels = rows[:, label_offset].astype(np.int64)
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32)  # (N, 3, 32, 32) uint8
    return ArrayData(torch.from_numpy(images.copy()), torch.from_numpy(labels), num_classes)


def _files(root: Path, names: list[str], dataset: str, folder: str) -> list[Path]:
    for base in (root, root / folder):
        paths = [base / name for name in names]
        if all(p.is_file() for p in paths):
            return paths
    raise PotstillError(
        f"{dataset} not found: looked for {', '.join(names)} in {root} and {root / folder}; "
        f"download the binary version ({folder}) once and set data.root to its folder"
    )


def _concat(parts: list[ArrayData]) -> ArrayData:
    return ArrayData(
        torch.cat([p.inputs for p in parts]), torch.cat([p.targets for p in parts]), parts[0].num_classes
    )


@DATASETS.register("cifar10")
def cifar10(root: str = "data/cifar10") -> RawData:
    """CIFAR-10, 32x32 colour images, 10 classes, from the binary distribution."""
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    paths = _files(Path(root), names, "cifar10", "cifar-10-batches-bin")
    parts = [read_cifar_binary(p, 1, 0, 10) for p in paths]
    return RawData(_concat(parts[:5]), parts[5], [f"cifar10 binary batches from {paths[0].parent}"])


@DATASETS.register("cifar100")
def cifar100(root: str = "data/cifar100", labels: str = "fine") -> RawData:
    """CIFAR-100, 32x32 colour images, 100 fine (or 20 coarse) classes, from the binary distribution."""
    if labels not in ("fine", "coarse"):
        raise PotstillError(f"cifar100 labels must be 'fine' or 'coarse', got '{labels}'")
    paths = _files(Path(root), ["train.bin", "test.bin"], "cifar100", "cifar-100-binary")
    offset, classes = (1, 100) if labels == "fine" else (0, 20)
    train, test = (read_cifar_binary(p, 2, offset, classes) for p in paths)
    return RawData(train, test, [f"cifar100 ({labels} labels) binary files from {paths[0].parent}"])
