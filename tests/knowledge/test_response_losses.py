"""DKD, DIST and logit-standardised KD against their papers' equations, worked out in plain Python."""

import math

import pytest
import torch

from potstill.errors import PotstillError
from potstill.knowledge import create_loss
from tests.knowledge.test_kd import kd_by_hand, softmax

STUDENT = [[2.0, 1.0, 0.0, -1.0], [0.5, 0.5, 3.0, 0.0], [1.0, -2.0, 0.5, 0.2]]
TEACHER = [[3.0, 0.5, 0.0, 1.0], [1.0, 0.0, 4.0, 1.0], [0.0, -1.0, 2.0, 0.3]]
TARGET = [0, 2, 3]


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def run(name, **kwargs):
    loss = create_loss(name, **kwargs)
    batch = {"target": torch.tensor(TARGET)}
    return loss({"logits": torch.tensor(STUDENT)}, {"logits": torch.tensor(TEACHER)}, batch).item()


def dkd_by_hand(temperature, alpha, beta):
    total = 0.0
    for s_row, t_row, label in zip(STUDENT, TEACHER, TARGET):
        p_s, p_t = softmax(s_row, temperature), softmax(t_row, temperature)
        binary_s, binary_t = [p_s[label], 1 - p_s[label]], [p_t[label], 1 - p_t[label]]
        rest_s = [p / (1 - p_s[label]) for k, p in enumerate(p_s) if k != label]
        rest_t = [p / (1 - p_t[label]) for k, p in enumerate(p_t) if k != label]
        total += alpha * kl(binary_t, binary_s) + beta * kl(rest_t, rest_s)
    return temperature**2 * total / len(STUDENT)


@pytest.mark.parametrize("temperature,alpha,beta", [(4.0, 1.0, 8.0), (1.0, 1.0, 1.0), (2.0, 0.5, 0.0)])
def test_dkd_matches_the_decoupled_equation(temperature, alpha, beta):
    expected = dkd_by_hand(temperature, alpha, beta)
    value = run("dkd", temperature=temperature, target_weight=alpha, non_target_weight=beta)
    assert value == pytest.approx(expected, rel=1e-5)


def test_dkd_with_alpha_1_and_beta_1_minus_p_t_recovers_classical_kd():
    # KD = TCKD + (1 - p_t^T) NCKD per sample (the paper's Eq. 1): check it sample by sample
    for s_row, t_row, label in zip(STUDENT, TEACHER, TARGET):
        loss = create_loss("dkd", temperature=3.0, target_weight=1.0,
                           non_target_weight=1 - softmax(t_row, 3.0)[label])
        batch = {"target": torch.tensor([label])}
        value = loss({"logits": torch.tensor([s_row])}, {"logits": torch.tensor([t_row])}, batch).item()
        assert value == pytest.approx(kd_by_hand([s_row], [t_row], 3.0), rel=1e-5)


def test_dkd_gradients_are_finite_even_with_extreme_logits():
    student = torch.tensor([[80.0, -80.0, 0.0]], requires_grad=True)
    value = create_loss("dkd")({"logits": student}, {"logits": torch.tensor([[-50.0, 50.0, 0.0]])},
                               {"target": torch.tensor([0])})
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()


def pearson(a, b):
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    covariance = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))
    return covariance / math.sqrt(sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b))


@pytest.mark.parametrize("tau,beta,gamma", [(1.0, 1.0, 1.0), (4.0, 2.0, 0.5)])
def test_dist_matches_inter_and_intra_correlation(tau, beta, gamma):
    y_s = [softmax(row, tau) for row in STUDENT]
    y_t = [softmax(row, tau) for row in TEACHER]
    inter = 1 - sum(pearson(s, t) for s, t in zip(y_s, y_t)) / len(y_s)
    columns = range(len(STUDENT[0]))
    intra = 1 - sum(pearson([r[k] for r in y_s], [r[k] for r in y_t]) for k in columns) / len(columns)
    expected = tau**2 * (beta * inter + gamma * intra)
    assert run("dist", temperature=tau, inter_weight=beta, intra_weight=gamma) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_dist_is_zero_for_any_positive_linear_map_of_the_predictions(tau):
    """Catches: a correlation that is not Pearson's (cosine similarity without centring, which a
    shift b changes; a plain distance, which a scale a changes), and correlating logits instead of
    the softened predictions softmax(z / tau).
    Teacher predictions q = a * p + b with a = 0.4, b = (1 - a) / K (still a distribution), for
    every sample with the same a and b, so both the inter-class (per row) and the intra-class
    (per column) correlations are 1."""
    torch.manual_seed(0)
    student = torch.randn(6, 5) * 2  # (B, K)
    p = (student / tau).softmax(dim=1)
    a, b = 0.4, 0.6 / 5
    teacher = tau * (a * p + b).log() + torch.randn(6, 1)  # softmax(teacher / tau) = a p + b; a row shift changes nothing
    assert torch.allclose((teacher / tau).softmax(dim=1), a * p + b, atol=1e-6)
    assert not torch.allclose(teacher, student)
    value = create_loss("dist", temperature=tau)({"logits": student}, {"logits": teacher}, {})
    assert value.item() == pytest.approx(0.0, abs=2e-5 * tau**2)  # float32 rounding, scaled by tau^2
    # the same logits with the scale inverted (a < 0 is not a positive map) are far from 0
    negative = tau * (1.2 / 5 - 0.2 * p).log()
    assert create_loss("dist", temperature=tau)({"logits": student}, {"logits": negative}, {}).item() > 1.0


def z_score(row):
    mean = sum(row) / len(row)
    std = math.sqrt(sum((x - mean) ** 2 for x in row) / (len(row) - 1))  # unbiased
    return [(x - mean) / std for x in row]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_standardized_kd_is_kd_on_z_scored_logits(temperature):
    expected = kd_by_hand([z_score(r) for r in STUDENT], [z_score(r) for r in TEACHER], temperature)
    assert run("kd_standardized", temperature=temperature) == pytest.approx(expected, rel=1e-5)


def test_standardized_kd_ignores_logit_scale_and_shift():
    # the point of the method: a student whose logits are 5x the teacher's + 3 matches it exactly
    teacher = torch.randn(4, 7)
    value = create_loss("kd_standardized")({"logits": 5 * teacher + 3}, {"logits": teacher}, {})
    assert value.item() == pytest.approx(0.0, abs=1e-5)
    assert create_loss("kd")({"logits": 5 * teacher + 3}, {"logits": teacher}, {}).item() > 0.1


@pytest.mark.parametrize("name,kwargs", [("dkd", {"temperature": 0}), ("dkd", {"non_target_weight": -1}),
                                         ("dist", {"temperature": -1}), ("kd_standardized", {"temperature": 0})])
def test_bad_hyperparameters_are_rejected(name, kwargs):
    with pytest.raises(PotstillError):
        create_loss(name, **kwargs)
