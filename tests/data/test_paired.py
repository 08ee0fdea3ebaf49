"""Paired data: a second modality carried by name through splits, loaders and the cache's content,
shown in the same view as the first; the sensors' renderings are fixed and lose information."""

import pytest
import torch

from potstill.data import ArrayData, BatchLoader, load_dataset
from potstill.data.arrays import DataSplits, channel_stats
from potstill.data.loader import Augment
from potstill.data.paired import edges, lowres
from potstill.errors import PotstillError


def paired(count: int = 12, size: int = 4) -> ArrayData:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(count, 1, size, size, generator=generator)
    return ArrayData(images, torch.arange(count) % 3, 3, teacher_inputs=images.flip(-1) * 0.5)


def test_both_fields_go_through_subset_to_fields_and_content():
    data = paired()
    assert data.image_fields == ("input", "teacher_input")
    part = data.subset(torch.tensor([1, 4])).to("cpu")
    assert torch.equal(part.teacher_inputs, data.teacher_inputs[[1, 4]])
    fields = part.fields(torch.tensor([1]))
    assert set(fields) == {"input", "teacher_input"} and torch.equal(fields["teacher_input"], data.teacher_inputs[[4]])
    assert set(data.content()) == {"inputs", "teacher_inputs"}
    assert set(ArrayData(data.inputs, data.targets, 3).content()) == {"inputs"}  # unpaired data: as before
    assert set(data.example(2, torch.Generator())) == {"input", "teacher_input"}


def test_a_mismatched_or_non_finite_second_modality_is_refused_by_name():
    images = torch.rand(4, 1, 4, 4)
    with pytest.raises(PotstillError, match=r"teacher inputs have shape \(4, 1, 8, 8\) but the images \(4, 1, 4, 4\)"):
        ArrayData(images, torch.zeros(4, dtype=torch.long), 2, teacher_inputs=torch.rand(4, 1, 8, 8))
    bad = torch.rand(4, 1, 4, 4)
    bad[2, 0, 1, 1] = float("nan")
    with pytest.raises(PotstillError, match="teacher inputs hold non-finite values in 1 of 4 samples: sample 2"):
        ArrayData(images, torch.zeros(4, dtype=torch.long), 2, teacher_inputs=bad)
    plain = ArrayData(images, torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(PotstillError, match="splits carry different fields"):
        DataSplits("mine", paired(), None, plain, (0.5,), (0.2,))


def test_the_same_view_is_applied_to_both_modalities():
    images = torch.rand(16, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    data = ArrayData(images, torch.arange(16) % 2, 2, teacher_inputs=images.clone())  # identical: views must agree
    loader = BatchLoader(data, 8, augment=Augment(hflip=True, crop_padding=2), shuffle=True, seed=3)
    for batch in loader.batches(0):
        assert torch.equal(batch["input"], batch["teacher_input"])
        assert not torch.equal(batch["input"], images[batch["index"]])  # and a view was drawn


def test_statistics_per_field():
    data = paired()
    assert channel_stats(data, field="teacher_input") != channel_stats(data)
    splits = DataSplits("mine", data, None, data, *channel_stats(data))
    mean, _ = splits.statistics("teacher_input")
    assert mean[0] == pytest.approx(float(data.teacher_inputs.mean()), abs=1e-6)
    assert splits.statistics("input") == (splits.mean, splits.std)


def test_lowres_sensor_block_means_and_edges_hand_worked():
    images = torch.arange(16.0).view(1, 1, 4, 4) / 16  # rows 0..3, columns 0..3
    seen = lowres(images, factor=2, noise=0.0, generator=torch.Generator())
    # the top-left 2x2 block holds 0, 1, 4, 5 (/16): mean 2.5/16, rounded to 8 bits, shown as a 2x2 block
    assert torch.allclose(seen[0, 0, :2, :2], torch.full((2, 2), round(2.5 / 16 * 255) / 255))
    assert len(seen.unique()) == 4
    step = torch.zeros(1, 1, 3, 4)
    step[..., 2:] = 1.0  # a vertical step between columns 1 and 2
    magnitude = edges(step)
    # column 1: d/dx = (1 + 2 + 1) * (1 - 0) = 4 -> 4 / (4 * sqrt 2); flat columns 0 and 3: 0
    assert torch.allclose(magnitude[0, 0, :, 1], torch.full((3,), 2**-0.5))
    assert torch.equal(magnitude[0, 0, :, 0], torch.zeros(3)) and torch.equal(magnitude[0, 0, :, 3], torch.zeros(3))


def test_registered_pair_keeps_the_image_for_the_teacher_and_renders_the_student_sensor():
    splits = load_dataset("digits_pair", train_size=100)
    again = load_dataset("digits_pair", train_size=100)
    plain = load_dataset("digits", train_size=100)
    assert torch.equal(splits.train.teacher_inputs, plain.train.inputs)  # the teacher's modality: the image itself
    assert torch.equal(splits.train.inputs, again.train.inputs)  # the rendering is fixed (seeded noise)
    other = load_dataset("digits_pair", train_size=100, args={"seed": 1})
    assert not torch.equal(other.train.inputs, splits.train.inputs)
    assert splits.describe()["fields"] == ["input", "teacher_input"]
    assert "lowres sensor" in " ".join(splits.notes)
    blocks = splits.train.inputs.float().unfold(2, 2, 2).unfold(3, 2, 2)  # (N, 1, 4, 4, 2, 2): constant blocks
    assert torch.equal(blocks.amax(dim=(-1, -2)), blocks.amin(dim=(-1, -2)))
    edge = load_dataset("digits_pair", train_size=100, args={"sensor": "edges"})
    assert not torch.equal(edge.train.inputs, splits.train.inputs)
    with pytest.raises(PotstillError, match="sensor must be one of lowres, edges"):
        load_dataset("digits_pair", args={"sensor": "depth"})
    with pytest.raises(PotstillError, match="factor must divide the image size 8x8, got 3"):
        load_dataset("digits_pair", args={"factor": 3})


def test_the_arrays_reader_takes_a_second_modality_from_npz_or_npy(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 1, 4, 4), dtype=np.uint8)
    t = rng.integers(0, 255, (40, 1, 4, 4), dtype=np.uint8)
    y = np.arange(40) % 2
    np.savez(tmp_path / "pair.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:],
             t_train=t[:30], t_test=t[30:])
    splits = load_dataset("arrays", root=str(tmp_path / "pair.npz"))
    assert torch.equal(splits.test.teacher_inputs, torch.from_numpy(t[30:]))
    assert any("paired: teacher_input from" in note for note in splits.notes)
    for name, array in {"x": x[:30], "y": y[:30], "t": t[:30]}.items():
        np.save(tmp_path / f"{name}.npy", array)
    carved = load_dataset("arrays", root=str(tmp_path), test_fraction=0.2,
                          args={"train_inputs": "x.npy", "train_labels": "y.npy", "train_teacher_inputs": "t.npy"})
    assert carved.train.teacher_inputs is not None and carved.test.teacher_inputs is not None  # carried into the split
    np.savez(tmp_path / "half.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:], t_train=t[:30])
    with pytest.raises(PotstillError, match=r"gives the training split a teacher_input but the test split has none"):
        load_dataset("arrays", root=str(tmp_path / "half.npz"))
    plain = load_dataset("arrays", root=str(tmp_path), args={"train_inputs": "x.npy", "train_labels": "y.npy"})
    assert plain.train.image_fields == ("input",)
