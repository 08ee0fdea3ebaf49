"""The numbers the report exists for, against values worked out by hand: top-1 accuracy, agreement
with the teacher, expected calibration error, parameter counts, and what `predict` hands them.

Five samples, three classes. Logits are log-probabilities, so softmax gives back the probabilities
written here and each row's confidence (its largest probability) is known exactly.
"""

import math

import pytest
import torch
from torch import nn

from potstill.engine.metrics import (
    accuracy,
    agreement,
    count_parameters,
    cpu_latency_ms,
    expected_calibration_error,
    predict,
)

PROBS = [
    [0.90, 0.06, 0.04],  # predicts 0, target 0: right, confidence 0.90
    [0.10, 0.78, 0.12],  # predicts 1, target 2: wrong, confidence 0.78 (the target's own probability is 0.12)
    [0.20, 0.18, 0.62],  # predicts 2, target 2: right, confidence 0.62
    [0.55, 0.30, 0.15],  # predicts 0, target 1: wrong, confidence 0.55
    [0.30, 0.42, 0.28],  # predicts 1, target 1: right, confidence 0.42
]
TARGETS = [0, 2, 2, 1, 1]
CONFIDENCE = [0.90, 0.78, 0.62, 0.55, 0.42]
CORRECT = [1, 0, 1, 0, 1]


def logits_of(probs):
    return torch.tensor(probs).log()


def test_accuracy_is_the_share_of_rows_whose_largest_logit_is_the_target():
    """Catches: comparing with != (gives 2/5), argmax over the batch axis, argmin, or a sum instead of a mean."""
    assert accuracy(logits_of(PROBS), torch.tensor(TARGETS)) == pytest.approx(3 / 5)
    assert accuracy(logits_of(PROBS), torch.tensor([0, 1, 2, 0, 1])) == 1.0
    assert accuracy(logits_of(PROBS), torch.tensor([1, 0, 0, 2, 0])) == 0.0


def test_agreement_counts_rows_where_both_models_pick_the_same_class():
    """Catches: == flipped to != (gives 2/6 instead of 4/6), comparing one model's argmax with the
    other's argmin or with raw logits, or averaging over the wrong axis. The reference model has
    different logits even where it agrees, so only the argmax can match them."""
    student = logits_of(PROBS + [[0.2, 0.2, 0.6]])  # predictions 0 1 2 0 1 2
    teacher = torch.tensor([
        [5.0, 1.0, 0.0],  # 0: agrees
        [0.0, 2.0, 1.0],  # 1: agrees
        [3.0, 0.0, 1.0],  # 0: disagrees (student 2)
        [0.0, 0.0, 9.0],  # 2: disagrees (student 0)
        [-1.0, 4.0, 0.0],  # 1: agrees
        [0.0, -3.0, 0.5],  # 2: agrees
    ])
    assert agreement(student, teacher) == pytest.approx(4 / 6)
    assert agreement(teacher, student) == pytest.approx(4 / 6)
    assert agreement(teacher, teacher * 3 + 1) == 1.0


def ece_by_hand(bins):
    """sum over bins (low, high] of share * |accuracy - mean confidence|, empty bins skipped."""
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(CONFIDENCE) if low < c <= high]
        if members:
            accuracy_in_bin = sum(CORRECT[i] for i in members) / len(members)
            confidence_in_bin = sum(CONFIDENCE[i] for i in members) / len(members)
            total += len(members) / len(CONFIDENCE) * abs(accuracy_in_bin - confidence_in_bin)
    return total


@pytest.mark.parametrize("bins,expected", [
    # 4 bins: (0, .25] empty (3 classes: confidence >= 1/3); (.25, .5] {0.42 right};
    # (.5, .75] {0.62 right, 0.55 wrong}; (.75, 1] {0.90 right, 0.78 wrong}
    (4, 1 / 5 * abs(1 - 0.42) + 2 / 5 * abs(1 / 2 - (0.62 + 0.55) / 2) + 2 / 5 * abs(1 / 2 - (0.90 + 0.78) / 2)),
    # 15 bins (the default): every sample alone in its bin, 10 of 15 bins empty
    (15, (0.10 + 0.78 + 0.38 + 0.55 + 0.58) / 5),
    # 1 bin: |overall accuracy - mean confidence|, where signed errors cancel
    (1, abs(3 / 5 - (0.90 + 0.78 + 0.62 + 0.55 + 0.42) / 5)),
])
def test_ece_matches_the_binned_gap_between_accuracy_and_confidence(bins, expected):
    """Catches: dropping .abs() (4 bins: -0.050 instead of 0.286), confidence taken as the target's
    probability instead of the largest one, a wrong share (divided by the bin instead of all
    samples), the wrong number of bins, or empty bins counted as NaN or as a gap."""
    assert expected == pytest.approx(ece_by_hand(bins))  # the equation and the worked numbers agree
    value = expected_calibration_error(logits_of(PROBS), torch.tensor(TARGETS), bins)
    assert value == pytest.approx(expected, abs=1e-6)
    assert math.isfinite(value)


def test_ece_default_is_fifteen_bins():
    """Catches: a changed default bin count (the report's default is 15). Confidences 0.87 and 0.93
    share the bin (13/15, 14/15] of 15 bins, but fall in different bins with 14 or 16."""
    logits = logits_of([[0.87, 0.10, 0.03], [0.93, 0.04, 0.03]])
    targets = torch.tensor([0, 1])  # right, wrong
    assert expected_calibration_error(logits, targets) == pytest.approx(abs(1 / 2 - (0.87 + 0.93) / 2), abs=1e-6)  # 0.4
    assert expected_calibration_error(logits, targets, bins=16) == pytest.approx((0.13 + 0.93) / 2, abs=1e-6)  # 0.53


def test_ece_bins_are_open_below_and_closed_above():
    """Catches: bins [low, high) instead of (low, high] (a confidence of exactly 1.0 would fall in
    no bin, one of exactly 0.5 in the upper bin), and bins that overlap at their edges."""
    minus_inf = float("-inf")
    logits = torch.tensor([[0.0, 0.0, minus_inf], [0.0, minus_inf, minus_inf]])  # confidences exactly 0.5 and 1.0
    # bins (0, .5] = {0.5, right} and (.5, 1] = {1.0, wrong}: 1/2 * |1 - 0.5| + 1/2 * |0 - 1|
    assert expected_calibration_error(logits, torch.tensor([0, 1]), bins=2) == pytest.approx(0.75)
    # a perfectly calibrated, certain model: no gap
    assert expected_calibration_error(logits[1:], torch.tensor([0]), bins=2) == 0.0


def test_parameter_count_includes_frozen_parameters_excludes_buffers_and_counts_tied_weights_once():
    """Catches: counting only trainable parameters, counting BatchNorm's running statistics, or
    counting a shared weight twice (iterating state_dict instead of parameters)."""
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 3, bias=False))
    assert count_parameters(model) == (4 * 3 + 3) + (3 + 3) + 3 * 3  # BatchNorm: weight and bias; 3 buffers not counted
    model[0].requires_grad_(False)
    assert count_parameters(model) == 30  # frozen parameters still count
    tied = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    tied[1].weight = tied[0].weight
    assert count_parameters(tied) == 9


class Batches:
    """A stand-in loader: fixed batches of a few samples."""

    def __init__(self, inputs, targets, size):
        self.inputs, self.targets, self.size = inputs, targets, size

    def batches(self):
        for start in range(0, len(self.targets), self.size):
            yield {"input": self.inputs[start:start + self.size], "target": self.targets[start:start + self.size]}


def test_predict_concatenates_every_batch_in_eval_mode_and_restores_the_mode():
    """Catches: a batch dropped (last or first), predictions made in training mode (dropout on),
    the model left in eval mode afterwards, or targets out of order."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5))
    inputs, targets = torch.randn(5, 2), torch.tensor([2, 0, 1, 1, 0])
    model.train()
    logits, seen = predict(model, Batches(inputs, targets, size=2))  # batches of 2, 2, 1
    assert model.training
    with torch.no_grad():
        expected = model[0](inputs)  # dropout is the identity in eval mode
    assert torch.equal(seen, targets) and torch.allclose(logits, expected)
    model.eval()
    predict(model, Batches(inputs, targets, size=5))
    assert not model.training


def test_cpu_latency_is_positive_and_leaves_the_model_as_it_was():
    """Catches: the model left in eval mode, a zero or negative time (time difference reversed)."""
    model = nn.Linear(3, 2).train()
    milliseconds = cpu_latency_ms(model, (3,), batch_size=4, repeats=2)
    assert milliseconds > 0 and model.training and next(model.parameters()).device.type == "cpu"


def test_macro_f1_against_a_hand_worked_case():
    """targets 0 0 1 2, predictions 0 1 1 1: class 0 F1 = 2*1/(1+2) = 2/3, class 1 = 2*1/(3+1) = 1/2,
    class 2 = 0 (never predicted): mean 7/18."""
    from potstill.engine.metrics import macro_f1

    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1]), 3).float()
    assert macro_f1(logits, torch.tensor([0, 0, 1, 2])) == pytest.approx(7 / 18)
    assert macro_f1(logits, torch.tensor([0, 1, 1, 1])) == pytest.approx(1.0)
