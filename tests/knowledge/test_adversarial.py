"""The discriminator losses (`adversarial` on logits, `adversarial_features` on tapped layers): a
hand-worked value, which player each half trains, their own optimizer group, the teacher cache,
exact resume, and a discriminator on a layer that does not exist."""

import math

import pytest
import torch
from torch import nn

from potstill.engine.checkpoint import load_tensors
from potstill.engine.task import Task
from potstill.errors import PotstillError
from potstill.knowledge import create_loss
from potstill.knowledge.response.adversarial import Discriminator, adversarial_game
from tests.conftest import tiny_recipe
from tests.engine.test_resume import Stop, run_recipe, same
from tests.knowledge.nets import make_batch, make_task


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def set_discriminator(classes: int) -> Discriminator:
    """Hidden width 1: h = z0 - z1 (+ 0.5 for label 0, - 0.5 for label 1 when conditional), D = leaky_relu(h)."""
    discriminator = Discriminator(2, [1], classes)
    with torch.no_grad():
        first, last = discriminator.net[0], discriminator.net[2]
        first.weight.copy_(torch.tensor([[1.0, -1.0] + [0.5, -0.5][:classes]]))
        first.bias.zero_()
        last.weight.fill_(1.0)
        last.bias.zero_()
    return discriminator


@pytest.mark.parametrize("classes,expected", [
    # teacher [2, 0]: D = 2; student [0, 1]: D = leaky(-1) = -0.2
    (0, softplus(-2.0) + softplus(-0.2) + softplus(0.2)),
    # label 0 adds 0.5: teacher D = 2.5; student D = leaky(-0.5) = -0.1
    (2, softplus(-2.5) + softplus(-0.1) + softplus(0.1)),
])
def test_hand_worked_value(classes, expected):
    """-log s(D(t)) - log(1 - s(D(s))) - log s(D(s)), with -log s(x) = softplus(-x)."""
    teacher, student = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    labels = torch.tensor([0]) if classes else None
    value = adversarial_game(set_discriminator(classes), teacher, student, labels)
    assert value.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.523206 if not classes else 1.467683, abs=1e-6)


def test_each_half_trains_only_its_own_player():
    """The discriminator's gradient is that of L_D alone; the student's that of L_fool alone; the teacher gets none."""
    torch.manual_seed(0)
    discriminator = Discriminator(5, [8, 8], 5)
    teacher = torch.randn(6, 5, requires_grad=True)
    student = torch.randn(6, 5, requires_grad=True)
    labels = torch.randint(0, 5, (6,))
    adversarial_game(discriminator, teacher, student, labels).backward()
    assert teacher.grad is None
    game_grads = [p.grad.clone() for p in discriminator.parameters()]
    student_grad = student.grad.clone()

    bce = nn.functional.binary_cross_entropy_with_logits
    discriminator.zero_grad()
    real, fake = discriminator(teacher.detach(), labels), discriminator(student.detach(), labels)
    (bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))).backward()
    for game, alone in zip(game_grads, (p.grad for p in discriminator.parameters())):
        assert torch.allclose(game, alone, atol=1e-7)

    copy = student.detach().clone().requires_grad_(True)
    fooled = discriminator(copy, labels)
    bce(fooled, torch.ones_like(fooled)).backward()
    assert torch.allclose(student_grad, copy.grad, atol=1e-7) and student_grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["adversarial", "adversarial_features"])
def test_student_and_discriminator_learn_the_teacher_never(name):
    task, term = make_task(name)
    task.step(make_batch(8, seed=1), 0.0).terms[name].backward()
    assert all(p.grad is None and not p.requires_grad for p in task.teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in term.loss.own_parameters())
    reached = [p for p in task.model.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert reached, "no gradient reached the student"


@pytest.mark.parametrize("name", ["adversarial", "adversarial_features"])
def test_the_discriminator_has_its_own_optimizer_group(name):
    task, term = make_task(name)
    groups = task.parameter_groups()
    assert list(groups) == ["all", name]
    own = {id(p) for p in term.loss.own_parameters()}
    assert {id(p) for p in groups[name]} == own
    assert not own & {id(p) for p in groups["all"]}
    trainable = {id(p) for p in task.module.parameters() if p.requires_grad}
    assert {id(p) for group in groups.values() for p in group} == trainable


def test_other_losses_keep_the_single_group():
    task, _ = make_task("fitnet")
    assert {k: [id(p) for p in v] for k, v in task.parameter_groups().items()} == \
        {k: [id(p) for p in v] for k, v in Task.parameter_groups(task).items()}


def test_arguments_are_checked():
    with pytest.raises(PotstillError, match="hidden: a list of layer widths"):
        create_loss("adversarial", hidden=[0])
    with pytest.raises(PotstillError, match="conditional: true or false"):
        create_loss("adversarial_features", conditional="yes")


ADVERSARIAL = {"loss": "adversarial", "weight": 0.5, "args": {"hidden": [16]}}


def test_resumed_run_has_the_same_student_and_discriminator(tmp_path):
    recipe = tiny_recipe(train__epochs=3, distill__terms=[ADVERSARIAL], distill__baseline=False)
    run_recipe(tmp_path / "whole", recipe)

    def interrupt(stage, epochs_done, record):
        if stage == "student" and epochs_done == 2:
            raise Stop

    with pytest.raises(Stop):
        run_recipe(tmp_path / "cut", recipe, callbacks=[interrupt])
    run_recipe(tmp_path / "cut", recipe, resume=True)
    for name in ("model.safetensors", "module.safetensors"):
        whole, cut = (load_tensors(tmp_path / run / "student" / name)[0] for run in ("whole", "cut"))
        assert same(whole, cut), name
    module = load_tensors(tmp_path / "whole" / "student" / "module.safetensors")[0]
    assert any(key.startswith("losses.adversarial.discriminator.") for key in module)


def test_teacher_logits_from_the_cache(tmp_path):
    recipe = tiny_recipe(train__epochs=2, data__hflip=False, distill__terms=[ADVERSARIAL], distill__baseline=False,
                         distill__cache={"enabled": True, "dtype": "float32"})
    summary = run_recipe(tmp_path, recipe)
    assert any((tmp_path / "teacher_cache").iterdir())
    records = [r for r in __import__("potstill.engine.run", fromlist=["RunDir"]).RunDir(tmp_path).records() if r.get("stage") == "student"]
    assert all(math.isfinite(r["terms"]["adversarial"]) and r["terms"]["adversarial"] > 0 for r in records)
    assert 0 <= summary["models"][-1]["test_acc"] <= 1


def test_a_discriminator_on_a_layer_that_does_not_exist(tmp_path):
    recipe = tiny_recipe(student={"name": "small_cnn", "args": {"channels": [8], "hidden": 16}},
                         distill__terms=[{"loss": "adversarial_features", "pairs": [{"student": "features.9", "teacher": "features.0"}]}])
    with pytest.raises(PotstillError, match="features.9"):
        run_recipe(tmp_path, recipe)
    logits_with_pairs = tiny_recipe(distill__terms=[{"loss": "adversarial", "pairs": [{"student": "fc", "teacher": "fc"}]}])
    with pytest.raises(PotstillError, match="compares logits only and taps no layers; remove pairs"):
        run_recipe(tmp_path / "second", logits_with_pairs)
