"""Boundary-supporting samples (scheme bss): the attack against a hand-made linear teacher, the
choice of base samples and target classes, the BSS term and its schedule, a frozen teacher, and
the recipes it refuses. Run end to end and resumed exactly in tests/schemes/test_every_scheme.py."""

import pytest
import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.schemes import SCHEMES
from potstill.schemes.boundary import BoundaryDistillation, base_samples, boundary_attack, target_classes
from tests.engine.test_resume import run_recipe
from tests.knowledge.nets import make_batch, make_task
from tests.schemes.helpers import scheme_recipe


def linear_teacher() -> nn.Module:
    """f(x) = W x on (B, 1, 1, 2) inputs; rows 0 and 1 differ by (0.6, 0.8): ||w_1 - w_0|| = 1."""
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        teacher[1].weight.copy_(torch.tensor([[0.6, 0.0], [1.2, 0.8], [-1.0, -1.0]]))
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def gap(teacher: nn.Module, x: torch.Tensor) -> float:
    logits = teacher(x)[0]
    return float(logits[0] - logits[1])


@pytest.mark.parametrize("step_size,iterations", [(1.0, 1), (1.0, 5), (0.3, 1), (0.3, 4)])
def test_the_attack_moves_to_the_boundary_at_the_papers_rate(step_size, iterations):
    """With ||grad (f_1 - f_0)|| = 1 a step changes the gap f_0 - f_1 by -eta (gap + eps): after n steps
    gap_n = (gap_0 + eps)(1 - eta)^n - eps while class 0 stays on top; with eta = 1 one step lands at
    -eps (just across) and the sample stops there."""
    teacher, x = linear_teacher(), torch.tensor([[[[2.0, -2.0]]]])  # logits (1.2, 0.8, 0.0): base class 0, gap 0.4
    epsilon = 1e-4
    crafted = boundary_attack(teacher, x, torch.tensor([1]), iterations, step_size, epsilon, -10.0, 10.0)
    steps = 1 if step_size == 1.0 else iterations
    assert gap(teacher, crafted) == pytest.approx((0.4 + epsilon) * (1 - step_size) ** steps - epsilon, abs=1e-5)
    assert not crafted.requires_grad


@pytest.mark.parametrize("squared_norm,expected", [(False, 0.8 - 0.3 * 0.8001 * 2), (True, 0.8 - 0.3 * 0.8001)])
def test_the_step_divides_by_the_norm_or_its_square(squared_norm, expected):
    """Rows scaled by 2: the gap is 0.8 and ||g|| = ||grad (f_1 - f_0)|| = 2. One step changes the gap by
    -eta (gap + eps) ||g|| (official: step / ||g||) or by -eta (gap + eps) (Newton: step / ||g||^2)."""
    teacher, x = linear_teacher(), torch.tensor([[[[2.0, -2.0]]]])
    with torch.no_grad():
        teacher[1].weight.mul_(2.0)
    crafted = boundary_attack(teacher, x, torch.tensor([1]), 1, 0.3, 1e-4, -10.0, 10.0, squared_norm=squared_norm)
    assert gap(teacher, crafted) == pytest.approx(expected, abs=1e-5)


def test_the_attack_is_clipped_to_the_value_range_and_leaves_the_teacher_alone():
    teacher, x = linear_teacher(), torch.tensor([[[[2.0, -2.0]]]])
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    crafted = boundary_attack(teacher, x, torch.tensor([1]), 10, 1.0, 1e-4, -2.0, 2.0)
    assert crafted.min() >= -2.0 and crafted.max() <= 2.0
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def test_base_samples_are_the_teachers_correct_ones_most_disagreeing_first():
    teacher = torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [5.0, 0.0, 0.0]])
    student = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 5.0, 0.0], [0.0, 5.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 0])  # sample 2: the teacher is wrong
    assert base_samples(teacher, student, labels, 10).tolist() == [0, 1, 3]
    # samples 1 and 3 disagree equally on the non-label classes (one class each), sample 0 not at all
    assert sorted(base_samples(teacher, student, labels, 2).tolist()) == [1, 3]


def test_target_classes_follow_the_teachers_softmax_and_never_its_top_class():
    logits = torch.tensor([[10.0, 0.0, 4.0, -20.0]]).repeat(4000, 1)
    torch.manual_seed(0)
    drawn = target_classes(logits)
    assert (drawn != 0).all() and (drawn != 3).all()  # the top class never; class 3 has ~1e-11 of the mass
    share = (drawn == 2).float().mean().item()
    p = torch.softmax(logits[0], 0)
    assert share == pytest.approx((p[2] / (p[1] + p[2] + p[3])).item(), abs=0.02)
    torch.manual_seed(0)
    assert torch.equal(target_classes(logits), drawn)  # from torch's global RNG: a resumed run draws the same


def test_weight_falls_to_zero_at_three_quarters():
    scheme = SCHEMES.get("bss")()
    assert [scheme.weight_at(p, 8) for p in (0, 3, 6, 7.5)] == [2.0, 1.0, 0.0, 0.0]


def test_a_step_adds_the_bss_term_trains_the_student_and_never_the_teacher():
    task, term = make_task("kd")
    bss = BoundaryDistillation(task.model, task.teacher, task.terms, 0.5, sampling=SCHEMES.get("bss")(samples=4), epochs=2)
    before = {k: v.clone() for k, v in bss.teacher.state_dict().items()}
    batch = make_batch(16, seed=3)
    batch["target"] = bss.teacher(batch["input"]).argmax(1)  # the teacher right on every sample: 4 base samples
    result = bss.step(batch, 0.0)
    assert set(result.terms) == {"ce", "kd", "bss"} and result.weights["bss"] == 2.0
    assert result.terms["bss"] > 0
    sum(result.terms.values()).backward()
    assert all(p.grad is None and not p.requires_grad for p in bss.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in bss.model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in bss.teacher.state_dict().items())
    assert not bss.teacher.training
    assert "bss" not in bss.step(batch, 1.5).terms  # weight 0 from 0.75 x 2 epochs on: no attack


@pytest.mark.parametrize("changes,message", [
    ({"distill__cache": {"enabled": True}}, "no teacher-output cache can hold"),
    ({"scheme__args": {"until": 0}}, "until .* must lie in"),
    ({"scheme__args": {"samples": 0}}, "samples must be a whole number"),
    ({"scheme__args": {"step_size": -1.0}}, "step_size must be a finite number"),
])
def test_refused_recipes(tmp_path, changes, message):
    with pytest.raises(PotstillError, match=message):
        run_recipe(tmp_path, scheme_recipe("bss", **changes))


def test_a_teacher_is_required(tmp_path):
    recipe = scheme_recipe("bss")
    recipe.pop("teacher")
    with pytest.raises(PotstillError, match="the recipe has no teacher section"):
        run_recipe(tmp_path, recipe)
    recipe["distill"] |= {"loss": "lsr", "beta": None}  # a virtual teacher: nothing to attack all the same
    with pytest.raises(PotstillError, match="scheme bss attacks a teacher; add a teacher section"):
        run_recipe(tmp_path / "lsr", recipe)
