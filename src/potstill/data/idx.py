"""MNIST and Fashion-MNIST from their IDX files (LeCun's format), gzipped or not.

Fashion-MNIST's default location is where Debian's `dataset-fashion-mnist` package puts it.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from potstill.data.arrays import ArrayData
from potstill.data.registry import DATASETS, RawData, find_file
from potstill.errors import PotstillError

# IDX type codes -> numpy dtypes (big-endian on disk)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file: magic (0, 0, type, ndim), ndim big-endian uint32 sizes, then data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise PotstillError(f"cannot read IDX file {path}: {error}; the file is damaged, reinstall or re-copy it") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise PotstillError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(raw[4:header], dtype=">u4"))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise PotstillError(
            f"{path} is truncated or damaged: header says shape {shape} ({expected} bytes), "
            f"file holds {len(raw) - header} bytes; re-copy the file"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _load_idx_pair(root: Path, prefix: str, dataset: str, hint: str) -> ArrayData:
    images = read_idx(find_file(root, f"{prefix}-images-idx3-ubyte", dataset, hint))
    labels = read_idx(find_file(root, f"{prefix}-labels-idx1-ubyte", dataset, hint))
    if len(images) != len(labels):
        raise PotstillError(f"{dataset} in {root}: {len(images)} images but {len(labels)} labels")
    inputs = torch.from_numpy(images.astype(np.uint8)).unsqueeze(1)  # (N, 1, 28, 28)
    return ArrayData(inputs, torch.from_numpy(labels.astype(np.int64)), num_classes=10)


def _load_mnist_like(name: str, root: str | None, default: str, hint: str) -> RawData:
    where = Path(root or os.environ.get(f"POTSTILL_{name.upper()}_ROOT", default))
    train = _load_idx_pair(where, "train", name, hint)
    test = _load_idx_pair(where, "t10k", name, hint)
    return RawData(train, test, [f"{name} read from IDX files in {where} (official 60000/10000 split)"])


@DATASETS.register("fashion_mnist")
def fashion_mnist(root: str | None = None) -> RawData:
    """Fashion-MNIST, 28x28 grey clothing images, 10 classes (Xiao et al. 2017), from IDX files."""
    return _load_mnist_like(
        "fashion_mnist",
        root,
        "/usr/share/datasets/fashion-mnist",
        "on Debian/Ubuntu: apt-get install dataset-fashion-mnist; or set data.root to a folder with the four IDX files",
    )


@DATASETS.register("mnist")
def mnist(root: str | None = None) -> RawData:
    """MNIST handwritten digits, 28x28 grey, 10 classes, from IDX files (gzipped or not)."""
    return _load_mnist_like(
        "mnist",
        root,
        "/usr/share/datasets/mnist",
        "set data.root to a folder with train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), t10k-*",
    )
