import gzip
import struct

import numpy as np
import pytest
import torch

from potstill.data import ArrayData, Augment, BatchLoader, load_dataset
from potstill.data.cifar import read_cifar_binary
from potstill.data.idx import read_idx
from potstill.errors import PotstillError


def write_idx(path, array: np.ndarray, compress: bool):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_reader_round_trip(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x-idx3-ubyte" + (".gz" if compress else ""))
    write_idx(path, images, compress)
    assert np.array_equal(read_idx(path), images)


def test_truncated_idx_file_is_named(tmp_path):
    path = tmp_path / "bad-idx3-ubyte"
    write_idx(path, np.zeros((4, 2, 2)), compress=False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(PotstillError, match="truncated or damaged"):
        read_idx(path)


def test_mnist_from_a_folder_of_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 30), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (count, 28, 28)), True)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10, True)
    splits = load_dataset("mnist", root=str(tmp_path))
    assert (len(splits.train), len(splits.test), splits.input_shape) == (30, 10, (1, 28, 28))


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(PotstillError) as error:
        load_dataset("fashion_mnist", root=str(tmp_path / "nowhere"))
    message = str(error.value)
    assert "nowhere/train-images-idx3-ubyte" in message and "apt-get install dataset-fashion-mnist" in message
    with pytest.raises(PotstillError, match="cifar10 not found"):
        load_dataset("cifar10", root=str(tmp_path))


def test_cifar10_binary_records(tmp_path):
    records = []
    for label in range(3):
        pixels = np.full(3072, label * 10, dtype=np.uint8)
        records.append(np.concatenate([[label], pixels]).astype(np.uint8))
    path = tmp_path / "batch.bin"
    np.concatenate(records).tofile(path)
    data = read_cifar_binary(path, label_bytes=1, label_offset=0, num_classes=10)
    assert data.targets.tolist() == [0, 1, 2]
    assert data.inputs.shape == (3, 3, 32, 32) and int(data.inputs[2, 1, 5, 5]) == 20
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(PotstillError, match="not a CIFAR binary batch"):
        read_cifar_binary(path, 1, 0, 10)


def test_digits_split_is_stratified_and_seeded():
    splits = load_dataset("digits", val_fraction=0.1)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    assert len(splits.test) == pytest.approx(1797 * 0.2, abs=10)
    counts = torch.bincount(splits.test.targets, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # each class keeps ~20%
    again = load_dataset("digits", val_fraction=0.1)
    assert torch.equal(splits.test.targets, again.test.targets)
    assert splits.notes and "held out as test" in splits.notes[1]


def test_train_size_and_normalisation_stats():
    splits = load_dataset("digits", train_size=100)
    assert len(splits.train) == 100
    pixels = splits.train.as_float()
    assert splits.mean[0] == pytest.approx(pixels.mean().item(), rel=1e-5)
    assert splits.std[0] == pytest.approx(pixels.std(unbiased=False).item(), rel=1e-4)
    with pytest.raises(PotstillError, match="train_size must be between 1 and"):
        load_dataset("digits", train_size=10**6)


def test_labels_outside_the_class_range_are_rejected():
    with pytest.raises(PotstillError, match=r"labels range over 0\.\.12 but the data declares 10 classes"):
        ArrayData(torch.zeros(3, 1, 2, 2), torch.tensor([0, 5, 12]), num_classes=10)


def shifted(image, dy, dx):
    """The 4 x 4 image moved down by dy and right by dx pixels, zeros where nothing moved in."""
    return [[image[y - dy][x - dx] if 0 <= y - dy < 4 and 0 <= x - dx < 4 else 0.0 for x in range(4)] for y in range(4)]


def test_random_crop_is_the_image_shifted_by_at_most_the_padding():
    """Catches: a crop that returns the image unchanged, wraps around (roll) instead of filling
    with zeros, shifts by more than the padding, or draws offsets only on one side (0..padding)."""
    image = (torch.arange(16.0) + 1).view(4, 4).tolist()  # 1..16: a zero can only come from the padding
    crops = Augment(crop_padding=1)(torch.tensor(image).repeat(200, 1, 1, 1), torch.Generator().manual_seed(0))
    candidates = {(dy, dx): shifted(image, dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    seen = set()
    for crop in crops[:, 0].tolist():
        matches = [shift for shift, expected in candidates.items() if crop == expected]
        assert len(matches) == 1, crop
        seen.add(matches[0])
    assert seen == set(candidates)  # all nine shifts drawn, the plain image among them


def test_flip_is_per_sample_and_reproducible():
    images = torch.arange(2 * 3.0).view(1, 1, 1, 6).repeat(64, 1, 1, 1)
    augment = Augment(hflip=True)
    first = augment(images, torch.Generator().manual_seed(5))
    second = augment(images, torch.Generator().manual_seed(5))
    flipped = (first[:, 0, 0, 0] == 5).sum().item()
    assert torch.equal(first, second) and 10 < flipped < 54


def test_loader_batches_depend_only_on_seed_and_epoch():
    splits = load_dataset("synthetic")
    make = lambda: BatchLoader(splits.train, 100, mean=splits.mean, std=splits.std,
                               augment=Augment(True, 2), shuffle=True, seed=3)
    a, b = list(make().batches(4)), list(make().batches(4))
    assert all(torch.equal(x["input"], y["input"]) and torch.equal(x["index"], y["index"]) for x, y in zip(a, b))
    other_epoch = next(make().batches(5))
    assert not torch.equal(a[0]["index"], other_epoch["index"])
    assert sorted(torch.cat([x["index"] for x in a]).tolist()) == list(range(len(splits.train)))


def test_real_fashion_mnist(fashion_mnist_root):
    splits = load_dataset("fashion_mnist", root=str(fashion_mnist_root))
    assert (len(splits.train), len(splits.test), splits.input_shape, splits.num_classes) == (60000, 10000, (1, 28, 28), 10)
    assert torch.bincount(splits.train.targets).tolist() == [6000] * 10
    assert splits.mean[0] == pytest.approx(0.2860, abs=1e-3) and splits.std[0] == pytest.approx(0.3530, abs=1e-3)
