"""FitNets and attention transfer against their papers' equations, worked out in plain Python."""

import math

import pytest
import torch

from potstill.errors import PotstillError
from potstill.knowledge import Probe, create_loss

S = [[[1.0, 2.0], [0.0, -1.0]], [[0.5, 0.0], [1.0, 1.0]]]  # one sample, 2 channels, 2x2
T = [[[0.0, 1.0], [2.0, 0.0]], [[1.0, 1.0], [-1.0, 0.5]]]


def probe(student, teacher, adapters=True):
    return Probe("test", [student], [teacher], ["s"], ["t"], num_classes=3, num_samples=4, adapters=adapters)


def outputs(features):
    return {"logits": torch.zeros(features.shape[0], 3), "features": [features]}


def test_fitnet_without_regressor_is_the_mean_squared_hint_error():
    s, t = torch.tensor([S]), torch.tensor([T])
    loss = create_loss("fitnet")
    loss.setup(probe(s, t, adapters=False))  # equal shapes, adapters off: compared directly
    expected = sum((a - b) ** 2 for cs, ct in zip(S, T) for rs, rt in zip(cs, ct) for a, b in zip(rs, rt)) / 8
    assert loss(outputs(s), outputs(t), {}).item() == pytest.approx(expected)


def test_fitnet_regressor_maps_student_channels_to_the_teacher():
    s, t = torch.tensor([S]), torch.tensor([[T[0]]])  # 2 student channels -> 1 teacher channel
    loss = create_loss("fitnet")
    loss.setup(probe(s, t))
    conv, norm = loss.regressors[0].project
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[2.0]], [[-1.0]]]]))  # r(v) = 2 v_0 - v_1, then BatchNorm
    loss.eval()  # BatchNorm with its initial statistics: x / sqrt(1 + eps)
    scale = 1 / math.sqrt(1 + norm.eps)
    regressed = [[(2 * a - b) * scale for a, b in zip(r0, r1)] for r0, r1 in zip(S[0], S[1])]
    expected = sum((x - y) ** 2 for rr, rt in zip(regressed, T[0]) for x, y in zip(rr, rt)) / 4
    assert loss(outputs(s), outputs(t), {}).item() == pytest.approx(expected, rel=1e-6)


def attention_by_hand(channels):
    flat = [sum(c[i][j] ** 2 for c in channels) for i in range(len(channels[0])) for j in range(len(channels[0][0]))]
    norm = math.sqrt(sum(v * v for v in flat))
    return [v / norm for v in flat]


def test_attention_transfer_matches_normalised_squared_attention_maps():
    q_s, q_t = attention_by_hand(S), attention_by_hand(T)
    expected = sum((a - b) ** 2 for a, b in zip(q_s, q_t)) / 4  # mean over batch (1) and 4 positions
    loss = create_loss("at")
    value = loss(outputs(torch.tensor([S])), outputs(torch.tensor([T])), {})
    assert value.item() == pytest.approx(expected)


def test_attention_transfer_pools_the_larger_attention_map():
    teacher = torch.arange(16.0).reshape(1, 1, 4, 4) / 10  # (1, 1, 4, 4)
    student = torch.tensor([S])  # (1, 2, 2, 2)
    squares = (teacher[0, 0] ** 2).tolist()
    pooled = [sum(squares[2 * i + a][2 * j + b] for a in (0, 1) for b in (0, 1)) / 4 for i in (0, 1) for j in (0, 1)]
    norm = math.sqrt(sum(v * v for v in pooled))
    expected = sum((a - b / norm) ** 2 for a, b in zip(attention_by_hand(S), pooled)) / 4
    assert create_loss("at")(outputs(student), outputs(teacher), {}).item() == pytest.approx(expected, rel=1e-6)


def test_attention_p_changes_the_map_and_bad_p_is_refused():
    s, t = torch.tensor([S]), torch.tensor([T])
    assert create_loss("at", p=4.0)(outputs(s), outputs(t), {}) != create_loss("at")(outputs(s), outputs(t), {})
    with pytest.raises(PotstillError, match="loss 'at' needs p > 0"):
        create_loss("at", p=0.0)
