"""KD (Hinton et al. 2015) pinned by numbers worked out independently of the implementation."""

import math

import pytest
import torch

from potstill.errors import PotstillError
from potstill.knowledge import create_loss
from potstill.knowledge.response.kd import soft_target_kl


def softmax(values, temperature):
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def test_softened_teacher_distribution_from_the_paper_example():
    # logits [30, 5, 2, 2]: T=1 is almost one-hot, T=10 reveals the dark knowledge
    at_t10 = torch.softmax(torch.tensor([30.0, 5, 2, 2]) / 10, dim=0)
    assert at_t10.tolist() == pytest.approx([0.8308, 0.0682, 0.0505, 0.0505], abs=5e-5)
    at_t1 = torch.softmax(torch.tensor([30.0, 5, 2, 2]) / 1, dim=0)
    assert at_t1[0].item() == pytest.approx(1.0, abs=1e-10)
    assert at_t1[1].item() == pytest.approx(math.exp(-25), rel=1e-3)  # 1.39e-11


def kd_by_hand(student, teacher, temperature):
    """T^2 * mean over samples of sum_k p_t,k (log p_t,k - log p_s,k), in plain Python."""
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = softmax(s_row, temperature), softmax(t_row, temperature)
        total += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
    return temperature**2 * total / len(student)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 10.0])
def test_kd_value_matches_hand_computation(temperature):
    student = [[2.0, 1.0, 0.0, -1.0], [0.5, 0.5, 3.0, 0.0]]
    teacher = [[30.0, 5.0, 2.0, 2.0], [1.0, 0.0, 4.0, 1.0]]
    loss = create_loss("kd", temperature=temperature)
    value = loss({"logits": torch.tensor(student)}, {"logits": torch.tensor(teacher)}, {})
    assert value.item() == pytest.approx(kd_by_hand(student, teacher, temperature), rel=1e-5)


def test_worked_example_two_classes():
    # teacher logits [0, 0] -> p_t = [.5, .5]; student [ln 3, 0] at T=1 -> p_s = [.75, .25]
    # KL = .5 ln(.5/.75) + .5 ln(.5/.25) = .5 (ln 2/3 + ln 2) = .5 ln(4/3) = 0.143841
    value = soft_target_kl(torch.tensor([[math.log(3), 0.0]]), torch.tensor([[0.0, 0.0]]), 1.0)
    assert value.item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-6)


def test_identical_logits_give_zero():
    logits = torch.randn(5, 10)
    assert soft_target_kl(logits, logits.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 8.0])
def test_gradient_is_t_times_probability_difference(temperature):
    # d/dz_s [T^2 KL(p_t || softmax(z_s/T))] = T (p_s - p_t) / B
    student = torch.tensor([[2.0, 1.0, 0.0], [0.0, -1.0, 1.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, 3.0, 0.0], [0.5, 0.5, 0.5]])
    soft_target_kl(student, teacher, temperature).backward()
    expected = temperature * (torch.softmax(student.detach() / temperature, 1) - torch.softmax(teacher / temperature, 1)) / 2
    assert torch.allclose(student.grad, expected, atol=1e-6)


def test_t_squared_keeps_gradient_scale_independent_of_temperature():
    # Without T^2 the soft-target gradient shrinks as 1/T^2 at high T (Hinton et al. section 2.1).
    torch.manual_seed(0)
    student, teacher = torch.randn(64, 10), torch.randn(64, 10)

    def grad_norm(temperature, scaled):
        z = student.clone().requires_grad_(True)
        loss = soft_target_kl(z, teacher, temperature)
        (loss if scaled else loss / temperature**2).backward()
        return z.grad.norm().item()

    assert grad_norm(20.0, scaled=False) / grad_norm(40.0, scaled=False) == pytest.approx(4.0, rel=0.02)
    assert grad_norm(20.0, scaled=True) / grad_norm(40.0, scaled=True) == pytest.approx(1.0, rel=0.02)


def test_bad_temperature_is_rejected():
    with pytest.raises(PotstillError, match="temperature must be > 0"):
        create_loss("kd", temperature=0.0)
