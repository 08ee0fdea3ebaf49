"""Learning without Forgetting (schemes/lwf.py) and its building blocks (schemes/lifelong_tasks.py):
task splits, the accuracy matrix, the LwF term, herding, masking, gradient flow and bad inputs."""

import copy
import math

import pytest
import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.knowledge.wiring import build_terms
from potstill.recipe import DistillSpec
from potstill.schemes.lifelong_tasks import (
    allowed_classes,
    average_accuracy,
    forgetting,
    herding,
    lwf_distillation,
    masked_cross_entropy,
    old_groups,
    split_tasks,
    task_accuracies,
)
from potstill.schemes.lwf import LearningWithoutForgetting, LifelongStage
from tests.cli.test_cli import assert_user_error
from tests.conftest import write_recipe
from tests.engine.test_resume import run_recipe
from tests.schemes.helpers import scheme_recipe


def test_default_split_cuts_the_classes_in_order_into_near_equal_tasks():
    assert split_tasks(10, None, 5, "task") == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert split_tasks(10, None, 3, "task") == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert split_tasks(4, [[3, 1], [0, 2]], 5, "task") == [[3, 1], [0, 2]]  # given tasks keep their order


@pytest.mark.parametrize("tasks,num_tasks,setting,message", [
    ([[0, 1], [2]], 5, "class", "class(es) 3 are in no task"),
    ([[0, 1], [1, 2, 3]], 5, "class", "class 1 is in tasks 1 and 2"),
    ([[0, 0], [1, 2, 3]], 5, "class", "class 0 is twice in task 1"),
    ([[0, 1], [2, 3, 4]], 5, "class", "class 4 in task 2 is out of range; the data has classes 0..3"),
    ([[0, 1, 2, 3]], 5, "class", "needs at least two"),
    ([[0, 1], []], 5, "class", "task 2 has no class"),
    ([[0, 1, 2], [3]], 5, "task", "task 2 has one class"),
    (None, 1, "task", "num_tasks must be between 2 and the data's 4 classes"),
    (None, 5, "task", "num_tasks must be between 2 and the data's 4 classes"),
])
def test_split_refuses_a_class_in_no_task_or_in_two(tasks, num_tasks, setting, message):
    with pytest.raises(PotstillError, match=message.replace("(", r"\(").replace(")", r"\)")):
        split_tasks(4, tasks, num_tasks, setting)


def test_a_one_class_task_is_fine_when_classes_share_one_head():
    assert split_tasks(4, [[0, 1, 2], [3]], 5, "class") == [[0, 1, 2], [3]]


def test_average_accuracy_and_forgetting_on_a_hand_worked_matrix():
    matrix = [[0.9], [0.6, 0.8], [0.7, 0.5, 1.0]]
    assert average_accuracy(matrix) == pytest.approx([0.9, 0.7, 0.7333333])
    # F_1 = 0.9 - 0.6; F_2 = mean(max(0.9, 0.6) - 0.7, max(0.8) - 0.5) = mean(0.2, 0.3)
    assert forgetting(matrix)[0] is None
    assert forgetting(matrix)[1:] == pytest.approx([0.3, 0.25])


def test_lwf_term_is_kd_at_t_on_each_old_head_alone():
    # old head [0, 1] at T = 2: teacher softmax([ln 3, 0]) = [3/4, 1/4], student softmax([0, 0]) = [1/2, 1/2];
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308121; times T^2 = 0.5232483. Class 2 (new) is not compared.
    student = torch.tensor([[0.0, 0.0, 5.0]])
    teacher = torch.tensor([[2 * math.log(3.0), 0.0, -7.0]])
    assert float(lwf_distillation(student, teacher, [[0, 1]], 2.0)) == pytest.approx(0.5232483, rel=1e-6)
    # a second old head adds its own term; identical outputs add nothing
    assert float(lwf_distillation(student, teacher, [[0, 1], [2]], 2.0)) == pytest.approx(0.5232483, rel=1e-6)
    both = torch.tensor([[0.0, 0.0, 0.0, 2 * math.log(3.0)]])
    mine = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    assert float(lwf_distillation(mine, both, [[0, 1], [2, 3]], 2.0)) == pytest.approx(0.5232483, rel=1e-6)


def test_old_heads_are_per_task_or_one_over_every_old_class():
    tasks = [[0, 1], [2, 3], [4, 5]]
    assert old_groups(tasks, 0, "task") == [] and old_groups(tasks, 0, "class") == []
    assert old_groups(tasks, 2, "task") == [[0, 1], [2, 3]]
    assert old_groups(tasks, 2, "class") == [[0, 1, 2, 3]]


def test_herding_picks_the_samples_whose_running_mean_stays_closest_to_the_class_mean():
    # normalised: (1, 0) and four times (0, 1) -> mean (0.2, 0.8). k=1: (0, 1), the lowest index (1);
    # k=2: (0, 1) again (mean (0, 1), distance 0.28 < 0.42 for (1, 0)); k=3: (1, 0) (mean (1/3, 2/3), 0.19 < 0.28)
    features = torch.tensor([[5.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 1.0], [0.0, 3.0]])
    assert herding(features, 3).tolist() == [1, 2, 0]
    assert sorted(herding(features, 10).tolist()) == [0, 1, 2, 3, 4]  # each sample at most once


def test_task_incremental_evaluation_masks_to_the_samples_task():
    tasks = [[0, 1], [2, 3]]
    logits = torch.tensor([[1.0, 0.0, 5.0, 0.0],    # class 0: right within task 1, wrong over all classes
                           [0.0, 0.0, 1.0, 2.0],    # class 3: right either way
                           [3.0, 0.0, 1.0, 0.0]])   # class 2: right within task 2 only
    targets = torch.tensor([0, 3, 2])
    assert task_accuracies(logits, targets, tasks, 1, "task") == [1.0, 1.0]
    assert task_accuracies(logits, targets, tasks, 1, "class") == [0.0, 0.5]
    assert task_accuracies(logits, targets, tasks, 0, "class") == [1.0]  # after task 1, only classes 0, 1 exist


def test_masked_cross_entropy_is_cross_entropy_over_the_allowed_outputs():
    logits = torch.tensor([[2.0, 1.0, 9.0, -3.0], [0.5, 4.0, 1.0, 0.0]])
    targets = torch.tensor([1, 2])
    allowed = allowed_classes([[0, 1], [2, 3]], 1, "task", 4)[targets]
    expected = (torch.nn.functional.cross_entropy(logits[:1, :2], torch.tensor([1]))
                + torch.nn.functional.cross_entropy(logits[1:, 2:], torch.tensor([0]))) / 2
    assert float(masked_cross_entropy(logits, targets, allowed)) == pytest.approx(float(expected))
    # label smoothing spreads over the task's two outputs, as cross-entropy on the task's logits alone would
    smoothed = (torch.nn.functional.cross_entropy(logits[:1, :2], torch.tensor([1]), label_smoothing=0.1)
                + torch.nn.functional.cross_entropy(logits[1:, 2:], torch.tensor([0]), label_smoothing=0.1)) / 2
    assert float(masked_cross_entropy(logits, targets, allowed, label_smoothing=0.1)) == pytest.approx(float(smoothed))


def test_gradients_reach_the_student_never_the_previous_model():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 4))
    previous = copy.deepcopy(student)
    before = {name: value.clone() for name, value in previous.state_dict().items()}
    term = build_terms(DistillSpec(temperature=2.0, beta=0.25), epochs=1)[0]
    tasks = [[0, 1], [2, 3]]
    stage = LifelongStage(student, previous, allowed_classes(tasks, 1, "task", 4), old_groups(tasks, 1, "task"), term)
    with torch.no_grad():
        student[3].bias.add_(torch.tensor([0.5, -0.5, 0.0, 0.0]))  # differ from the previous model on the old head
    batch = {"input": torch.randn(5, 1, 2, 2), "target": torch.tensor([2, 3, 2, 3, 2])}
    result = stage.step(batch, 0.0)
    assert set(result.terms) == {"ce", "kd"} and result.weights["kd"] == 0.25
    expected = 0.25 * lwf_distillation(student(batch["input"]), previous(batch["input"]), [[0, 1]], 2.0)
    assert float(result.terms["kd"].detach()) == pytest.approx(float(expected.detach()))
    sum(result.terms.values()).backward()
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in student.parameters())
    assert all(parameter.grad is None and not parameter.requires_grad for parameter in previous.parameters())
    assert all(torch.equal(previous.state_dict()[name], value) for name, value in before.items())
    assert not previous.training


def test_a_run_reports_every_arm_after_every_task(tmp_path):
    recipe = scheme_recipe("lwf", train__epochs=1, scheme__args={"tasks": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], "setting": "class"})
    summary = run_recipe(tmp_path, recipe)
    lifelong = summary["lifelong"]
    assert lifelong["setting"] == "class" and lifelong["temperature"] == 2.0 and lifelong["beta"] == 0.25
    assert set(lifelong["arms"]) == {"lwf", "finetune_", "joint_"}
    for arm in lifelong["arms"].values():
        assert [len(row) for row in arm["accuracy"]] == [1, 2] and arm["forgetting"][0] is None
    rows = {row["role"]: row for row in summary["models"]}
    assert [row["role"] for row in summary["models"]] == ["baseline", "finetune", "student"]
    assert rows["student"]["test_acc"] == lifelong["arms"]["lwf"]["average_accuracy"][-1]
    assert (tmp_path / "task2" / "model.safetensors").is_file() and (tmp_path / "joint_task2").is_dir()
    assert rows["student"]["weights"] == "task2/model.safetensors"


@pytest.mark.parametrize("args,message", [
    ({"tasks": [[0, 1, 2, 3, 4], [5, 6, 7, 8]]}, "class(es) 9 are in no task"),
    ({"tasks": [[0, 1, 2, 3, 4], [4, 5, 6, 7, 8, 9]]}, "class 4 is in tasks 1 and 2"),
    ({"tasks": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10]]}, "class 10 in task 2 is out of range; the data has classes 0..9"),
    ({"tasks": [list(range(10))]}, "needs at least two"),
    ({"num_tasks": 1}, "num_tasks must be at least 2"),
    ({"replay_per_class": -1}, "replay_per_class must be >= 0"),
    ({"tasks": [list(range(9)), [9]]}, "task 2 has one class"),
])
def test_bad_lifelong_recipes_fail_from_the_cli_with_one_line(tmp_path, capsys, args, message):
    path = write_recipe(tmp_path, scheme_recipe("lwf", scheme__args=args))
    assert_user_error(capsys, ["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"], message)
    assert not (tmp_path / "run" / "task1").exists()  # refused before the first task trained


def test_lwf_takes_only_its_kd_term(tmp_path, capsys):
    path = write_recipe(tmp_path, scheme_recipe("lwf", distill={"loss": "dist", "alpha": 1.0}))
    assert_user_error(capsys, ["distill", str(path), "--run-dir", str(tmp_path / "run")], "set distill.loss: kd")
    with pytest.raises(PotstillError, match="replay_per_class"):
        LearningWithoutForgetting(replay_per_class=-2)
