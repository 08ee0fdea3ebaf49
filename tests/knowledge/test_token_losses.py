"""Token-level losses (knowledge/token/) against numbers worked out by hand, on one token of a
3-word vocabulary whose logits are the logs of chosen probabilities (so softmax gives them back):

    teacher p_t = (1/2, 1/4, 1/4)        student p_s = (1/8, 3/8, 1/2)
"""

import math

import pytest
import torch

from potstill.errors import PotstillError
from potstill.knowledge import LOSSES, create_loss

P_T, P_S = [0.5, 0.25, 0.25], [0.125, 0.375, 0.5]
log = math.log

# KL(p_t || p_s) = 1/2 ln(4) + 1/4 ln(2/3) + 1/4 ln(1/2) = ln 2 - 1/4 ln 3 = 0.418494
FORWARD = 0.5 * log(0.5 / 0.125) + 0.25 * log(0.25 / 0.375) + 0.25 * log(0.25 / 0.5)
# KL(p_s || p_t) = 1/8 ln(1/4) + 3/8 ln(3/2) + 1/2 ln(2) = 3/8 ln 3 - 1/8 ln 2 = 0.325336
REVERSE = 0.125 * log(0.125 / 0.5) + 0.375 * log(0.375 / 0.25) + 0.5 * log(0.5 / 0.25)
# beta = 1/2: m = (p_t + p_s) / 2 = (5/16, 5/16, 6/16);  1/2 (0.077850 + 0.097675) = 0.087762
JSD_HALF = 0.5 * (0.5 * log(0.5 / 0.3125) + 0.25 * log(0.25 / 0.3125) + 0.25 * log(0.25 / 0.375)) + \
    0.5 * (0.125 * log(0.125 / 0.3125) + 0.375 * log(0.375 / 0.3125) + 0.5 * log(0.5 / 0.375))
# beta = 1/4 (beta weights the teacher): m = 1/4 p_t + 3/4 p_s = (7/32, 11/32, 14/32);
# 1/4 KL(p_t || m) + 3/4 KL(p_s || m). Unlike beta = 1/2, this catches weights attached to the wrong model.
JSD_QUARTER = 0.25 * (0.5 * log(16 / 7) + 0.25 * log(8 / 11) + 0.25 * log(8 / 14)) + \
    0.75 * (0.125 * log(4 / 7) + 0.375 * log(12 / 11) + 0.5 * log(16 / 14))
# skew 0.1: mixture 0.1 p_t + 0.9 p_s = (0.1625, 0.3625, 0.475); KL(p_t || mixture) = 0.308611
SKEW = 0.5 * log(0.5 / 0.1625) + 0.25 * log(0.25 / 0.3625) + 0.25 * log(0.25 / 0.475)
# skew 0.1: mixture 0.9 p_t + 0.1 p_s = (0.4625, 0.2625, 0.275); KL(p_s || mixture) = 0.269130
SKEW_REVERSE = 0.125 * log(0.125 / 0.4625) + 0.375 * log(0.375 / 0.2625) + 0.5 * log(0.5 / 0.275)
# 1/2 (|1/2 - 1/8| + |1/4 - 3/8| + |1/4 - 1/2|) = 1/2 (3/8 + 1/8 + 2/8)
TVD = 0.375

CASES = [
    ("forward_kl", {}, FORWARD), ("reverse_kl", {}, REVERSE),
    ("jsd", {"beta": 0.0}, FORWARD), ("jsd", {"beta": 1.0}, REVERSE),  # our (and TRL's) ends
    ("jsd", {}, JSD_HALF), ("jsd", {"beta": 0.25}, JSD_QUARTER),
    ("skew_kl", {}, SKEW), ("skew_kl", {"skew": 0.0}, FORWARD), ("skew_kl", {"skew": 1.0}, 0.0),
    ("skew_reverse_kl", {}, SKEW_REVERSE), ("skew_reverse_kl", {"skew": 0.0}, REVERSE),
    ("skew_reverse_kl", {"skew": 1.0}, 0.0), ("tvd", {}, TVD),
]
NAMES = ["forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl", "tvd"]


def value(name, student_logits, teacher_logits, batch=None, **kwargs):
    return create_loss(name, **kwargs)({"logits": student_logits}, {"logits": teacher_logits}, batch or {})


@pytest.mark.parametrize("name,kwargs,expected", CASES)
def test_one_token_matches_the_hand_worked_number(name, kwargs, expected):
    student, teacher = torch.tensor([P_S]).log(), torch.tensor([P_T]).log()  # (B=1, V=3)
    assert value(name, student, teacher, **kwargs).item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_the_papers_defaults():
    assert create_loss("skew_kl").skew == create_loss("skew_reverse_kl").skew == 0.1  # DistiLLM
    assert create_loss("jsd").beta == 0.5 and create_loss("forward_kl").temperature == 1.0


def test_forward_kl_on_classifier_logits_is_kd_at_the_same_temperature():
    student, teacher = torch.randn(5, 7), torch.randn(5, 7)  # (B, K)
    expected = create_loss("kd", temperature=3.0)({"logits": student}, {"logits": teacher}, {}).item()
    assert value("forward_kl", student, teacher, temperature=3.0).item() == pytest.approx(expected, rel=1e-5)


def test_jsd_near_its_ends_is_beta_times_the_kl_the_end_stands_for():
    """GKD's limit D / beta -> KL(p_t || p_s) as beta -> 0 (and the mirror at 1): the jump we document."""
    student, teacher = torch.tensor([P_S], dtype=torch.float64).log(), torch.tensor([P_T], dtype=torch.float64).log()
    assert value("jsd", student, teacher, beta=1e-4).item() / 1e-4 == pytest.approx(FORWARD, rel=1e-3)
    assert value("jsd", student, teacher, beta=1 - 1e-4).item() / 1e-4 == pytest.approx(REVERSE, rel=1e-3)


@pytest.mark.parametrize("name,kwargs,expected", CASES)
def test_temperature_softens_both_models_and_scales_by_t_squared(name, kwargs, expected):
    # at T = 2, softmax(z / 2) is proportional to sqrt(exp z): teacher exp z = (4, 1, 1) -> (2, 1, 1) / 4 = p_t,
    # student exp z = (1, 9, 16) -> (1, 3, 4) / 8 = p_s; so the loss is 2^2 times the T = 1 number
    teacher, student = torch.tensor([[4.0, 1.0, 1.0]]).log(), torch.tensor([[1.0, 9.0, 16.0]]).log()
    result = value(name, student, teacher, temperature=2.0, **kwargs).item()
    assert result == pytest.approx(4 * expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_ignored_positions_change_neither_the_loss_nor_the_gradient(name):
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 4), torch.randn(2, 3, 4)  # (B, L, V)
    target = torch.tensor([[1, -100, 2], [-100, 0, -100]])
    counted = target != -100

    def run(logits):
        logits = logits.clone().requires_grad_(True)
        result = value(name, logits, teacher, {"target": target})
        result.backward()
        return result, logits.grad

    result, grad = run(student)
    one_by_one = [value(name, student[b, l][None], teacher[b, l][None]).item() for b, l in counted.nonzero().tolist()]
    assert result.item() == pytest.approx(sum(one_by_one) / 3, rel=1e-5)  # the mean over the 3 counted tokens
    changed = torch.where(counted[..., None], student, 50 * torch.randn(2, 3, 4))  # new logits where ignored
    changed_result, changed_grad = run(changed)
    assert changed_result.item() == pytest.approx(result.item(), rel=1e-6)
    assert torch.allclose(changed_grad[counted], grad[counted]) and (grad[~counted] == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_no_counted_position_gives_a_zero_that_backward_accepts(name):
    student = torch.randn(2, 3, 4, requires_grad=True)
    result = value(name, student, torch.randn(2, 3, 4), {"target": torch.full((2, 3), -100)})
    result.backward()
    assert result.item() == 0.0 and student.grad is not None and (student.grad == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_the_student_never_the_teacher(name):
    student, teacher = torch.randn(3, 5, requires_grad=True), torch.randn(3, 5, requires_grad=True)
    value(name, student, teacher, {"target": torch.tensor([0, 1, 2])}).backward()
    assert student.grad.abs().sum() > 0
    assert teacher.grad is None or (teacher.grad == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_half_precision_is_computed_in_float32(name):
    student, teacher = torch.randn(4, 6).bfloat16(), torch.randn(4, 6).bfloat16()
    result = value(name, student, teacher)
    assert result.dtype == torch.float32
    assert result.item() == pytest.approx(value(name, student.float(), teacher.float()).item(), rel=1e-6)


@pytest.mark.parametrize("name", ["forward_kl", "jsd", "skew_kl", "skew_reverse_kl", "tvd"])
@pytest.mark.parametrize("student_last", [1.0, float("-inf")])
def test_underflow_and_masked_vocabulary_give_no_nan(name, student_last):
    # student p(v) underflows to exactly 0 in float32 (log p = -160); the teacher rules out a word (-inf),
    # and in the second case so does the student (a mixture of two -inf: logsumexp's NaN gradient)
    student = torch.tensor([[80.0, -80.0, 0.0, student_last]], requires_grad=True)
    teacher = torch.tensor([[-50.0, 50.0, 0.0, float("-inf")]])
    result = value(name, student, teacher)
    result.backward()
    assert torch.isfinite(result) and torch.isfinite(student.grad).all()


@pytest.mark.parametrize("name,kwargs", [
    ("jsd", {"beta": 1.5}), ("jsd", {"beta": "0.5"}), ("jsd", {"beta": True}), ("jsd", {"beta": float("nan")}),
    ("skew_kl", {"skew": -0.1}), ("skew_reverse_kl", {"skew": 1.01}), ("skew_kl", {"skew": True}),
    ("forward_kl", {"temperature": 0}), ("reverse_kl", {"temperature": float("nan")}),
    ("tvd", {"temperature": "0.5"}), ("skew_reverse_kl", {"temperature": True}), ("jsd", {"temperature": -1.0}),
])
def test_bad_hyperparameters_are_refused_in_one_line(name, kwargs):
    with pytest.raises(PotstillError, match=f"loss '{name}' needs ") as caught:
        LOSSES.get(name)(**kwargs)  # the constructor's own checks, not only the registry's
    assert "\n" not in str(caught.value)


def test_the_message_names_the_range_and_the_value():
    with pytest.raises(PotstillError, match=r"^loss 'jsd' needs beta in \[0, 1\], got beta=1.5$"):
        create_loss("jsd", beta=1.5)


def test_mismatched_shapes_are_refused_with_the_fix():
    with pytest.raises(PotstillError, match="same vocabulary"):
        value("forward_kl", torch.randn(2, 3, 5), torch.randn(2, 3, 6))
    with pytest.raises(PotstillError, match="without the last axis"):
        value("forward_kl", torch.randn(2, 3, 5), torch.randn(2, 3, 5), {"target": torch.zeros(2, dtype=torch.long)})
