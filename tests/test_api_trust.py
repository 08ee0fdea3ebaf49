"""The Python API checks its arguments at the boundary: every mistake is one PotstillError that
names the problem and the fix, never a wrong result or an error from deep inside torch (issue 11)."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import potstill

# untrained teachers: the teacher check would (rightly) refuse them
QUICK = {"epochs": 1, "quiet": True, "batch_size": 32, "teacher_check": "off"}


def images(count: int = 64, seed: int = 0, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 1x8x8 float images in [0, 1] and labels 0..classes-1."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 1, 8, 8, generator=generator), torch.arange(count) % classes


def mlp() -> nn.Module:
    return potstill.create_model("mlp", input_shape=(1, 8, 8), num_classes=3, hidden=[8])


def cnn() -> nn.Module:
    return potstill.create_model("cnn", input_shape=(1, 8, 8), num_classes=3)


def test_nan_in_training_images_is_named_with_its_sample_index():
    """Planted bug: one NaN pixel in train_data was reported as 'the teacher cache was built from
    something else' (the NaN channel mean made the cache fingerprint differ from itself) or as a
    NaN loss, never as a NaN in the data."""
    x, y = images()
    x[5, 0, 3, 3] = float("nan")
    with pytest.raises(potstill.PotstillError, match=r"train_data images hold non-finite values .* sample 5 \(NaN\)"):
        potstill.distill(mlp(), mlp(), (x, y), images(30, 1), baseline=False, **QUICK)


def test_inf_in_test_images_is_refused():
    """Planted bug: +inf / -inf in test_data was accepted silently and the accuracies were computed on it."""
    x, y = images(30, 1)
    x[2, 0, 0, 0], x[7, 0, 1, 1] = float("inf"), float("-inf")
    with pytest.raises(potstill.PotstillError, match=r"test_data images .* samples 2 \(\+inf\), 7 \(-inf\)"):
        potstill.distill(mlp(), mlp(), images(), (x, y), **QUICK)


@pytest.mark.parametrize("role", ["train_data", "test_data"])
def test_empty_data_is_named(role):
    """Planted bug: an empty train set raised 'Expected positive integer total_steps', an empty
    test set a bare StopIteration."""
    x, y = images()
    data = {"train_data": images(), "test_data": images(30, 1), role: (x[:0], y[:0])}
    with pytest.raises(potstill.PotstillError, match=f"{role} holds no samples"):
        potstill.distill(mlp(), mlp(), data["train_data"], data["test_data"], **QUICK)


def test_teacher_and_student_the_same_module():
    """Planted bug: distill(teacher, teacher, ...) failed with 'element 0 of tensors does not require grad'."""
    model = mlp()
    with pytest.raises(potstill.PotstillError, match="teacher and the student are the same module.*deepcopy"):
        potstill.distill(model, model, images(), images(30, 1), **QUICK)


class Shared(nn.Module):
    """A student that reuses the teacher's first layer object."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        first = next(m for m in teacher.modules() if isinstance(m, nn.Linear))
        self.body = nn.Sequential(nn.Flatten(), first, nn.ReLU(), nn.Linear(first.out_features, 3))

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize(
    "make_student, message",
    [
        (lambda teacher: nn.Sequential(teacher), r"teacher is the student's submodule '0'"),
        (lambda teacher: teacher[1], r"student is the teacher's submodule '1'"),
        (Shared, r"student shares 2 parameter tensor\(s\) with the teacher \(student 'body.1.weight' is teacher"),
    ],
    ids=["student_wraps_teacher", "student_inside_teacher", "shared_layer"],
)
def test_student_that_shares_parameters_with_the_teacher(make_student, message):
    """Planted bug: a student wrapping, inside or sharing a layer with the teacher trained the
    teacher too (or failed deep in autograd); it must be refused, naming the shared part."""
    teacher = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3)))
    with pytest.raises(potstill.PotstillError, match=message):
        potstill.distill(teacher, make_student(teacher), images(), images(30, 1), **QUICK)


def test_models_that_are_not_modules():
    """Planted bug: a string as teacher raised AttributeError: 'str' object has no attribute 'training'."""
    with pytest.raises(potstill.PotstillError, match=r"teacher must be a torch.nn.Module .*got str.*create_model\('resnet'"):
        potstill.distill("resnet", mlp(), images(), images(30, 1), **QUICK)
    with pytest.raises(potstill.PotstillError, match="student must be a torch.nn.Module, got function"):
        potstill.distill(mlp(), lambda x: x, images(), images(30, 1), **QUICK)
    with pytest.raises(potstill.PotstillError, match="model must be a torch.nn.Module, got NoneType"):
        potstill.train(None, images(), images(30, 1), **QUICK)


def test_flat_features_given_to_a_cnn_name_the_shape_and_a_reshape():
    """Planted bug: flat (N, 64) data given to a CNN said 'Output size is too small' and nothing
    about the data's shape or the silent (N, 1, 1, 64) reshape."""
    (x, y), (xt, yt) = images(), images(30, 1)
    with pytest.raises(potstill.PotstillError) as error:
        potstill.distill(cnn(), cnn(), (x.reshape(64, 64), y), (xt.reshape(30, 64), yt), **QUICK)
    message = str(error.value)
    assert "shape (64,)" in message and "passed to models as (N, 1, 1, 64)" in message
    assert "Output size is too small" in message and "x.reshape(-1, 1, 8, 8)" in message


def test_labels_that_are_not_class_indices():
    """Planted bug: float labels were truncated to integers silently (0.7 -> class 0); one-hot
    labels got a shape error that did not say what they looked like."""
    x, y = images()
    with pytest.raises(potstill.PotstillError, match=r"train_data labels are torch.float32.*labels.long\(\)"):
        potstill.distill(mlp(), mlp(), (x, y.float()), images(30, 1), **QUICK)
    with pytest.raises(potstill.PotstillError, match=r"labels have shape \(64, 3\).*one-hot.*argmax\(dim=1\)"):
        potstill.distill(mlp(), mlp(), (x, nn.functional.one_hot(y, 3)), images(30, 1), **QUICK)


def test_train_and_test_with_different_sample_shapes():
    """Planted bug: different per-sample shapes said only 'train and test splits differ in shape or
    class count', naming neither shape."""
    xt, yt = images(30, 1)
    with pytest.raises(potstill.PotstillError, match=r"train_data samples have shape \(1, 8, 8\) but test_data samples \(1, 4, 16\)"):
        potstill.distill(mlp(), mlp(), images(), (xt.reshape(30, 1, 4, 16), yt), **QUICK)
    train = potstill.ArrayData(*images(), num_classes=3)
    test = potstill.ArrayData(*images(30, 1), num_classes=4)
    with pytest.raises(potstill.PotstillError, match="train_data declares 3 classes but test_data 4"):
        potstill.train(mlp(), train, test, **QUICK)


def test_numpy_arrays_are_accepted_and_left_unchanged():
    """Planted bug: numpy arrays were refused ('must be ... a pair of tensors'); accepting them
    must not modify the caller's arrays (they are wrapped with torch.from_numpy, sharing memory)."""
    (x, y), (xt, yt) = images(), images(30, 1)
    arrays = [x.numpy(), y.numpy(), xt.numpy(), yt.numpy()]
    copies = [array.copy() for array in arrays]
    teacher, _ = potstill.train(mlp(), (arrays[0], arrays[1]), (arrays[2], arrays[3]), **QUICK)
    for augment in (False, True):  # teacher cache, then the teacher run online on augmented views
        result = potstill.distill(teacher, mlp(), (arrays[0], arrays[1]), (arrays[2], arrays[3]),
                                  hflip=augment, crop_padding=int(augment), baseline=False, **QUICK)
        assert [row["role"] for row in result.summary["models"]] == ["teacher", "student"]
    assert all(np.array_equal(array, copy) for array, copy in zip(arrays, copies))
    flat = arrays[0].reshape(64, 64)
    flat_model = potstill.create_model("mlp", input_shape=(1, 1, 64), num_classes=3, hidden=[8])
    potstill.train(flat_model, (flat, arrays[1]), (arrays[2].reshape(30, 64), arrays[3]), **QUICK)
    assert np.array_equal(flat, copies[0].reshape(64, 64))


class TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, x):
        return self.net(x), x


class ThreeD(TupleOut):
    def forward(self, x):
        return self.net(x)[:, None, :]  # (B, 1, K)


def test_outputs_that_are_not_logits():
    """Planted bug: a model returning a tuple raised AttributeError 'tuple' object has no attribute
    'shape'; one returning (B, 1, K) was told it 'predicts 3 classes but python has 3'."""
    with pytest.raises(potstill.PotstillError, match=r"student returns a tuple, not a tensor.*only the logits"):
        potstill.distill(mlp(), TupleOut(), images(), images(30, 1), **QUICK)
    with pytest.raises(potstill.PotstillError, match=r"student returns shape \(2, 1, 3\).*\(2, K\)"):
        potstill.distill(mlp(), ThreeD(), images(), images(30, 1), **QUICK)


def test_no_temporary_folder_is_left_behind(tmp_path, monkeypatch):
    """Planted bug: every call without run_dir left a potstill-* folder in the temp directory, and
    the result pointed at it; the folder is now deleted on return and on error, result.run_dir is
    None and the summary names no weights file in it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def leftovers() -> list[Path]:
        return list(Path(tempfile.gettempdir()).glob("potstill-*"))

    result = potstill.distill(mlp(), mlp(), images(), images(30, 1), **QUICK)
    assert leftovers() == [] and result.run_dir is None
    assert all(row["weights"] is None for row in result.summary["models"])
    assert result.student(torch.zeros(1, 1, 8, 8)).shape == (1, 3)  # the models live in memory
    model, summary = potstill.train(mlp(), images(), images(30, 1), **QUICK)
    assert leftovers() == [] and summary["models"][0]["weights"] is None
    with pytest.raises(potstill.PotstillError, match="no pre-trained teacher"):
        potstill.distill(mlp(), mlp(), images(), images(30, 1), scheme="snapshot", **QUICK)  # fails after the folder is made
    assert leftovers() == []
    kept = potstill.distill(mlp(), mlp(), images(), images(30, 1), run_dir=tmp_path / "run", **QUICK)
    assert kept.run_dir == tmp_path / "run" and (tmp_path / "run" / "summary.json").is_file()
    assert (tmp_path / "run" / kept.summary["models"][-1]["weights"]).is_file()
