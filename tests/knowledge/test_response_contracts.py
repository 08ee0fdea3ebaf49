"""What the response losses promise besides their equations (those are pinned in test_kd.py and
test_response_losses.py): the papers' default hyperparameters, errors that name the loss and the
argument at fault, LSR's class and probability bounds, and standardisation as a true z-score.
Each test here was written for mutants that `make mutants` found alive (docs/testing.md)."""

import math

import pytest
import torch

from potstill.errors import PotstillError
from potstill.knowledge import create_loss
from potstill.knowledge.response.logit_standard import standardize

STUDENT = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.5, 0.5, 3.0, 0.0], [1.0, -2.0, 0.5, 0.2]])
TEACHER = torch.tensor([[3.0, 0.5, 0.0, 1.0], [1.0, 0.0, 4.0, 1.0], [0.0, -1.0, 2.0, 0.3]])
TARGET = torch.tensor([0, 2, 3])

PAPER_DEFAULTS = {
    "kd": {"temperature": 4.0},  # Hinton et al.: the CIFAR setting of RepDistiller/mdistiller
    "dkd": {"temperature": 4.0, "target_weight": 1.0, "non_target_weight": 8.0},  # CIFAR-100: T 4, alpha 1, beta 8
    "dist": {"temperature": 1.0, "inter_weight": 1.0, "intra_weight": 1.0},  # ImageNet: tau 1, beta = gamma = 1
    "kd_standardized": {"temperature": 2.0},  # CIFAR-100 base temperature
    "lsr": {"correct_probability": 0.99, "temperature": 20.0},  # official CIFAR-100 ResNet-18 setting
}


def value(name, **kwargs):
    loss = create_loss(name, **kwargs)
    return loss({"logits": STUDENT}, {"logits": TEACHER}, {"target": TARGET}).item()


@pytest.mark.parametrize("name", sorted(PAPER_DEFAULTS))
def test_defaults_are_the_papers(name):
    """Catches: a changed default (KD's T = 4 -> 5, DKD's beta = 8 -> 9, DIST's tau, LSR's T...):
    the loss built without arguments must equal the one built with the paper's values, each
    changed value must change the loss, so every default is pinned."""
    paper = PAPER_DEFAULTS[name]
    assert value(name) == pytest.approx(value(name, **paper), rel=1e-7)
    for key, default in paper.items():
        other = {**paper, key: default / 2 if key != "correct_probability" else 0.9}
        assert value(name, **other) != pytest.approx(value(name, **paper), rel=1e-4), key


@pytest.mark.parametrize("name,kwargs,fragments", [
    ("kd", {"temperature": 0.0}, ["kd temperature must be > 0", "got 0.0"]),
    ("dkd", {"temperature": -1.0}, ["loss 'dkd' needs temperature > 0", "temperature=-1.0"]),
    ("dkd", {"target_weight": -1.0}, ["loss 'dkd' needs", "target_weight=-1.0"]),
    ("dkd", {"non_target_weight": -0.5}, ["loss 'dkd' needs", "non_target_weight=-0.5"]),
    ("dist", {"temperature": 0.0}, ["loss 'dist' needs temperature > 0", "temperature=0.0"]),
    ("dist", {"inter_weight": -1.0}, ["loss 'dist' needs", "inter_weight=-1.0"]),
    ("dist", {"intra_weight": -0.5}, ["loss 'dist' needs", "intra_weight=-0.5"]),
    ("kd_standardized", {"temperature": -2.0}, ["loss 'kd_standardized' needs temperature > 0", "temperature=-2.0"]),
    ("lsr", {"temperature": 0.0}, ["loss 'lsr' needs temperature > 0", "temperature=0.0"]),
    ("lsr", {"correct_probability": 0.0}, ["loss 'lsr' needs 0 < correct_probability <= 1", "correct_probability=0.0"]),
    ("lsr", {"correct_probability": 1.5}, ["loss 'lsr' needs 0 < correct_probability <= 1", "correct_probability=1.5"]),
])
def test_bad_hyperparameters_name_the_loss_and_the_argument(name, kwargs, fragments):
    """Catches: an argument no longer checked (check_non_negative without inter_weight), or a
    message that names another loss or none ("loss 'None' needs ...")."""
    with pytest.raises(PotstillError) as error:
        create_loss(name, **kwargs)
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)


def test_lsr_accepts_a_one_hot_virtual_teacher_and_two_classes_but_not_one():
    """Catches: the bound correct_probability <= 1 made strict (a one-hot virtual teacher, a = 1,
    is the paper's limit case), the class check moved to 'at least 3', and its message reading
    the wrong axis."""
    one_hot = create_loss("lsr", correct_probability=1.0, temperature=1.0)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # (B, K = 2)
    got = one_hot({"logits": logits}, {"logits": None}, {"target": torch.tensor([0, 0])}).item()
    # virtual teacher softmax([1, 0] / 1) = [e/(e+1), 1/(e+1)]; KL to softmax of each row, mean over 2 x 2
    q = [math.e / (math.e + 1), 1 / (math.e + 1)]
    expected = 0.0
    for row in logits.tolist():
        log_p = [x - math.log(sum(math.exp(y) for y in row)) for x in row]
        expected += sum(qk * (math.log(qk) - lp) for qk, lp in zip(q, log_p))
    assert got == pytest.approx(expected / 4, rel=1e-6)
    with pytest.raises(PotstillError, match="needs at least 2 classes, got 1"):
        one_hot({"logits": torch.zeros(3, 1)}, {"logits": None}, {"target": torch.zeros(3, dtype=torch.long)})


def test_lsr_follows_the_dtype_of_the_logits():
    """Catches: the virtual teacher left in float32 (`.to(logits.dtype)` dropped): under bf16
    autocast the loss would come out in another precision than the logits it compares."""
    logits = STUDENT.to(torch.bfloat16)
    got = create_loss("lsr")({"logits": logits}, {"logits": None}, {"target": TARGET})
    assert got.dtype == torch.bfloat16


def test_standardize_is_a_z_score_per_row():
    """Catches: the mean taken over the whole batch, or added instead of subtracted. (KD on the
    result cannot see either: softmax ignores a shift of a row, so only the function itself can.)"""
    z = standardize(torch.tensor([[1.0, 2.0, 3.0, 6.0], [10.0, 10.0, 14.0, 6.0]]))
    # row 1: mean 3, unbiased std sqrt((4 + 1 + 0 + 9) / 3); row 2: mean 10, std sqrt(32 / 3)
    std_1, std_2 = math.sqrt(14 / 3), math.sqrt(32 / 3)
    expected = [[-2 / std_1, -1 / std_1, 0.0, 3 / std_1], [0.0, 0.0, 4 / std_2, -4 / std_2]]
    assert z.tolist() == [pytest.approx(row, abs=1e-6) for row in expected]
