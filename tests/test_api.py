"""The Python API with arbitrary nn.Modules and plain tensors."""

import pytest
import torch
from torch import nn

import potstill


def data(count: int, seed: int, classes: int = 3):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % classes
    centres = torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])[:classes]
    return centres[labels] + 0.5 * torch.randn(count, 4, generator=generator), labels


def net(hidden: int, classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def test_distill_trains_a_student_from_plain_tensors(tmp_path):
    # both normalised by the training data's statistics (the default, auto, leaves inputs as given);
    # the teacher keeps its preprocessing from train() when it teaches (auto)
    torch.manual_seed(0)  # the models' initial weights: this test checks quality, so fix them
    teacher, _ = potstill.train(net(32), data(300, 0), data(90, 1), epochs=5, lr=0.01, run_dir=tmp_path / "t",
                                preprocess="dataset")
    torch.manual_seed(0)  # the student's initial weights, independent of what train() drew
    student = net(8)
    result = potstill.distill(teacher, student, data(300, 0), data(90, 1), loss="kd", temperature=3.0,
                              alpha=0.5, epochs=10, lr=0.01, batch_size=32, run_dir=tmp_path / "d",
                              student_preprocess="dataset")
    assert result.student is student and result.baseline is not None
    accuracy = {row["role"]: row["test_acc"] for row in result.summary["models"]}
    assert accuracy["teacher"] > 0.9 and accuracy["student"] > 0.8
    assert (tmp_path / "d" / "student" / "model.safetensors").is_file()
    shown = repr(result)  # what a notebook shows: the comparison table with every model's top-1
    assert "did distillation pay off?" in shown and f"{100 * accuracy['student']:.2f}%" in shown


def test_class_count_mismatch_between_teacher_and_student():
    with pytest.raises(potstill.PotstillError, match="teacher predicts 3 classes but the student 5"):
        potstill.distill(net(8), net(4, classes=5), data(30, 0), data(9, 1), epochs=1)


def test_labels_beyond_the_models_classes():
    x, y = data(30, 0)
    with pytest.raises(potstill.PotstillError, match="labels range over 5..7 but the data declares 3 classes"):
        potstill.distill(net(8), net(4), (x, y + 5), data(9, 1), epochs=1)


def test_unknown_and_mistyped_settings():
    with pytest.raises(potstill.PotstillError, match="unknown argument 'temprature'"):
        potstill.distill(net(8), net(4), data(30, 0), data(9, 1), temprature=2)
    with pytest.raises(potstill.PotstillError, match="alpha"):
        potstill.distill(net(8), net(4), data(30, 0), data(9, 1), alpha="half")


def test_create_model_and_loss_are_public():
    model = potstill.create_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[16])
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert potstill.create_loss("kd", temperature=2.0).temperature == 2.0


def test_schemes_from_python_with_and_without_a_teacher(tmp_path):
    teacher, _ = potstill.train(net(32), data(300, 0), data(90, 1), epochs=3, lr=0.01, run_dir=tmp_path / "t")
    result = potstill.distill(None, net(8), data(300, 0), data(90, 1), scheme={"name": "snapshot", "args": {"source": "ema"}},
                              epochs=3, lr=0.01, batch_size=32, run_dir=tmp_path / "s")
    assert result.teacher is None and result.summary["scheme"] == "snapshot"
    assert [row["role"] for row in result.summary["models"]] == ["baseline", "student"]
    with pytest.raises(potstill.PotstillError, match=r"has no pre-trained teacher; .*teacher=None"):
        potstill.distill(teacher, net(8), data(30, 0), data(9, 1), scheme="snapshot", epochs=2, run_dir=tmp_path / "x")
    with pytest.raises(potstill.PotstillError, match="set student in the recipe"):
        potstill.distill(teacher, net(8), data(30, 0), data(9, 1), scheme="born_again", epochs=1, run_dir=tmp_path / "y")
