"""Data-free distillation (dafl, dfad, deep_inversion): the loss terms by hand, where gradients go,
the PNG grid, the BatchNorm refusal and runs without training data (data.train_data: none)."""

import math
import struct
import zlib

import pytest
import torch
import yaml
from torch import nn

from potstill import config
from potstill.cli.main import main
from potstill.engine.task import WeightedTerm
from potstill.errors import PotstillError
from potstill.knowledge import LOSSES
from potstill.models import create_model
from potstill.recipe import Recipe
from potstill.schedules import WeightSchedule
from potstill.schemes.dafl import DAFLTask, activation_loss, information_entropy_loss, one_hot_loss
from potstill.schemes.deep_inversion import (
    DeepInversion,
    Inversion,
    competition,
    feature_statistics,
    statistics_distance,
    total_variation,
)
from potstill.schemes.dfad import AdversarialGeneration, through_detached
from potstill.startup import preflight
from potstill.synthesis import Generator, SyntheticSteps, write_grid
from potstill.workbench import Workbench
from tests.engine.test_resume import run_recipe
from tests.schemes.helpers import scheme_recipe

SHAPE = (1, 8, 8)


# ---- the terms, worked by hand ------------------------------------------------------------------

def test_dafl_terms_by_hand():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, math.log(3.0)]])  # softmax rows (0.75, 0.25), (0.25, 0.75)
    assert one_hot_loss(logits).item() == pytest.approx(-math.log(0.75))  # each row's own top class at p = 0.75
    assert information_entropy_loss(logits).item() == pytest.approx(-math.log(2.0))  # mean (0.5, 0.5): entropy ln 2
    assert information_entropy_loss(torch.tensor([[9.0, 0.0], [9.0, 0.0]])).item() > -0.01  # one class only: ~0
    assert activation_loss(torch.tensor([[1.0, -2.0], [3.0, 0.0]])).item() == pytest.approx(-1.5)


def test_logit_l1_is_dfads_mean_absolute_error():
    loss = LOSSES.create("logit_l1")
    value = loss({"logits": torch.tensor([[1.0, 2.0]])}, {"logits": torch.tensor([[0.0, 4.0]])}, {})
    assert value.item() == pytest.approx(1.5)  # (|1 - 0| + |2 - 4|) / 2


def test_batch_norm_statistics_term_by_hand():
    layer = nn.BatchNorm2d(1).eval()
    layer.running_mean.fill_(1.0)
    layer.running_var.fill_(1.0)
    inputs = torch.tensor([1.0, 3.0, 5.0, 7.0]).view(2, 1, 1, 2)  # mean 4, biased variance 5
    assert statistics_distance(inputs, layer).item() == pytest.approx(3.0 + 4.0)
    net = nn.Sequential(layer, nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1).eval())
    nn.init.constant_(net[1].weight, 2.0)  # the second layer sees 2 * normalised inputs
    with feature_statistics(net) as distances:
        net(inputs)
    normalised = (inputs - 1.0) / math.sqrt(1.0 + layer.eps)  # (0, 2, 4, 6) / ~1: mean ~3, variance ~5
    second = 2 * normalised
    expected = abs(second.mean().item()) + abs(second.var(unbiased=False).item() - 1.0)  # fresh BN: mean 0, var 1
    assert len(distances) == 2
    assert distances[0].item() == pytest.approx(7.0)
    assert distances[1].item() == pytest.approx(expected, rel=1e-5)


def test_total_variation_and_competition_by_hand():
    image = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2)
    # right (-1, -1): sqrt 2; down (-2, -2): sqrt 8; diagonals 2 - 1 = 1 and 0 - 3 = -3
    assert total_variation(image).item() == pytest.approx(math.sqrt(2) + math.sqrt(8) + 1 + 3)
    same = torch.tensor([[2.0, 0.0, -1.0]])
    assert competition(same, same).item() == pytest.approx(1.0)  # JS 0: nothing to compete for
    apart = competition(torch.tensor([[300.0, 0.0]]), torch.tensor([[0.0, 300.0]]))
    assert apart.item() == pytest.approx(1.0 - math.log(2.0), abs=1e-5)  # disjoint: JS = ln 2


# ---- where gradients go -------------------------------------------------------------------------

def models(seed: int = 0):
    torch.manual_seed(seed)
    teacher = create_model("small_cnn", input_shape=SHAPE, num_classes=4, channels=[4], hidden=8, dropout=0.0)
    student = create_model("small_cnn", input_shape=SHAPE, num_classes=4, channels=[4], hidden=8, dropout=0.0)
    return teacher, student


def kd_terms(name: str = "kd") -> list[WeightedTerm]:
    return [WeightedTerm(name, LOSSES.create(name), 1.0, WeightSchedule())]


def grads(loss: torch.Tensor, module: nn.Module) -> list[torch.Tensor | None]:
    return torch.autograd.grad(loss, list(module.parameters()), retain_graph=True, allow_unused=True)


def reaches(loss: torch.Tensor, module: nn.Module) -> bool:
    return any(g is not None and g.abs().sum() > 0 for g in grads(loss, module))


def check_separate_games(task, result, generator_terms):
    student_loss = sum(v for k, v in result.terms.items() if k not in generator_terms)
    generator_loss = sum(v for k, v in result.terms.items() if k in generator_terms)
    assert reaches(student_loss, task.model) and not reaches(student_loss, task.generator)
    assert reaches(generator_loss, task.generator) and not reaches(generator_loss, task.model)
    sum(result.terms.values()).backward()  # the loop's one backward
    assert all(p.grad is None and not p.requires_grad for p in task.teacher.parameters())
    assert set(task.parameter_groups()) == {"student", "generator"}


def test_dafl_generator_terms_train_the_generator_only():
    teacher, student = models()
    task = DAFLTask(student, teacher, kd_terms(), 8, Generator(SHAPE, 16, 8), "classifier:input", 1.0, 0.1, 5.0)
    task.module.train()
    result = task.step({"step": torch.tensor([0])}, 0.0)
    assert set(result.terms) == {"kd", "generator_one_hot", "generator_activation", "generator_entropy"}
    assert result.scored["target"].shape == (8,) and result.logits.shape == (8, 4)
    check_separate_games(task, result, {"generator_one_hot", "generator_activation", "generator_entropy"})


def test_dfad_student_never_learns_from_the_generators_objective():
    teacher, student = models()
    task = AdversarialGeneration(student, teacher, kd_terms("logit_l1"), 8, Generator(SHAPE, 16, 8), 1.0)
    task.module.train()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    result = task.step({"step": torch.tensor([0])}, 0.0)
    # the game: the generator's term is exactly minus the student's (same images and models; no dropout here)
    assert result.terms["generator_discrepancy"].item() == pytest.approx(-result.terms["logit_l1"].item(), rel=1e-5)
    check_separate_games(task, result, {"generator_discrepancy"})
    # the student's BatchNorm statistics moved once (its own pass), not twice
    once = create_model("small_cnn", input_shape=SHAPE, num_classes=4, channels=[4], hidden=8, dropout=0.0)
    once.load_state_dict(before)
    once.train()
    once(result.scored["input"])
    assert torch.allclose(once.block1.bn.running_mean, student.block1.bn.running_mean)


def test_through_detached_reaches_the_inputs_not_the_model():
    _, student = models()
    images = torch.rand(4, *SHAPE, requires_grad=True)
    logits = through_detached(student, {"input": images})
    logits.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in student.parameters())


def test_deep_inversion_optimises_inputs_and_trains_only_the_student():
    teacher, student = models()
    weights = {"feature": 10.0, "tv": 2.5e-5, "l2": 0.0, "competition": 1.0}
    task = Inversion(student, teacher, kd_terms(), 8, 4, SHAPE, weights, iterations=1, lr=0.1)
    task.module.train()
    torch.manual_seed(3)
    start = task.objective(torch.rand(8, *SHAPE), torch.arange(8) % 4)
    task.iterations = 15
    torch.manual_seed(3)
    result = task.step({"step": torch.tensor([0])}, 0.0)
    # the inversion lowered its objective from the same start (the same seed draws the same classes and noise)
    total = sum(v for k, v in result.terms.items() if k.startswith("inversion_"))
    assert total.item() < sum(start.values()).item()
    assert student.training and all(not v.requires_grad for k, v in result.terms.items() if k.startswith("inversion_"))
    assert 0.0 <= result.scored["input"].min() and result.scored["input"].max() <= 1.0
    assert reaches(result.terms["kd"], student)
    sum(result.terms.values()).backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_deep_inversion_refuses_a_teacher_without_batch_norm(tmp_path):
    mlp = create_model("mlp", input_shape=SHAPE, num_classes=4, hidden=[8])
    with pytest.raises(PotstillError, match="teacher's BatchNorm layers, but the teacher has none"):
        DeepInversion().check_teacher(mlp)
    recipe = scheme_recipe("deep_inversion", teacher={"model": {"name": "mlp", "args": {"hidden": [8]}}, "train": {"epochs": 1}})
    with pytest.raises(PotstillError, match="BatchNorm"):
        run_recipe(tmp_path, recipe)
    assert not (tmp_path / "teacher").exists()  # refused before the teacher trained


# ---- the pieces -----------------------------------------------------------------------------------

def test_png_grid_decodes_to_the_pixels(tmp_path):
    images = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]], [[[1.0, 0.0], [0.0, 1.0]]]])  # (2, 1, 2, 2)
    path = write_grid(tmp_path / "grid.png", images, columns=2, scale=1)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = {}, 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind, body = data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = body
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, colour) == (2 * 3 + 1, 3 + 1, 8, 0)  # 2 images of 2 px + 1 px borders, grey
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[r * (width + 1):(r + 1) * (width + 1)] for r in range(height)]
    assert all(row[0] == 0 for row in rows)  # filter byte: none
    assert list(rows[1][2:4]) == [0, 255] and list(rows[2][2:4]) == [128, 64]  # image 1 (after the border)
    assert list(rows[1][5:7]) == [255, 0] and list(rows[2][5:7]) == [0, 255]  # image 2
    assert rows[0][1] == 128  # grey border


def test_synthetic_steps_read_no_data():
    steps = SyntheticSteps(3, torch.device("cpu"))
    assert len(steps) == 3 and [b["step"].item() for b in steps.batches(5)] == [0, 1, 2] and steps.share(0) == 1.0
    generator = Generator((3, 7, 10), latent_dim=5, width=4)
    images = generator(generator.noise(2, torch.device("cpu")))
    assert images.shape == (2, 3, 7, 10) and 0.0 <= images.min() and images.max() <= 1.0


# ---- a run without training data ------------------------------------------------------------------

def teacher_checkpoint(tmp_path) -> str:
    recipe = scheme_recipe("offline", train__epochs=1, distill__baseline=False)
    run_recipe(tmp_path / "teacher_run", recipe)
    return str(tmp_path / "teacher_run" / "teacher" / "model.safetensors")


def no_data(checkpoint: str, **changes) -> dict:
    recipe = scheme_recipe("dafl", train__epochs=2, data__train_data="none", data__hflip=False, teacher__checkpoint=checkpoint,
                           distill__baseline=False)
    recipe["teacher"].pop("train")
    for dotted, value in changes.items():
        node = recipe
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return recipe


def test_a_run_without_training_data_never_touches_the_training_split(tmp_path, monkeypatch):
    checkpoint = teacher_checkpoint(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("the training split was read")

    monkeypatch.setattr(Workbench, "train_loader", refuse)
    preflight(config.validate(no_data(checkpoint), Recipe), "distill")  # accepted
    summary = run_recipe(tmp_path / "run", no_data(checkpoint))
    assert [row["role"] for row in summary["models"]] == ["teacher", "student"]
    assert summary["data_free"]["fraction_of_baseline"] is None and summary["data_free"]["training_images_seen"] == 0
    teacher_acc = summary["models"][0]["test_acc"]
    assert summary["data_free"]["fraction_of_teacher"] == pytest.approx(summary["models"][1]["test_acc"] / teacher_acc)
    assert (tmp_path / "run" / "student" / "generator.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "run" / "student" / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]


@pytest.mark.parametrize("changes,message", [
    ({"teacher__checkpoint": None}, "teacher.checkpoint: with data.train_data: none"),
    ({"distill__baseline": True}, "set distill.baseline: false"),
    ({"data__crop_padding": 1}, "data.crop_padding: it shapes training images"),
    ({"distill__cache": {"enabled": True}}, "distill.cache: scheme 'dafl'"),
    ({"scheme": "offline", "distill__alpha": 0.5}, "scheme 'offline' trains on the training split"),
    ({"distill__alpha": 0.5}, "synthetic images, which have no labels; set distill.alpha: 0"),
    ({"distill__loss": "at", "distill__temperature": None}, "loss 'at' compares intermediate layers"),
])
def test_data_free_refusals_name_the_fix(tmp_path, capsys, changes, message):
    path, checkpoint = tmp_path / "recipe.yaml", tmp_path / "teacher.safetensors"
    checkpoint.write_bytes(b"")  # refused before any file is read
    path.write_text(yaml.safe_dump(no_data(str(checkpoint), **changes)))
    assert main(["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before the run folder exists


def test_potstill_train_refuses_no_training_data(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(scheme_recipe("offline", data__train_data="none")))
    assert main(["train", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    assert "`potstill train` has nothing to train on" in capsys.readouterr().err
