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
    """Q = vec( sum_c A_c^2 ) / its L2 norm, for one sample given as [channel][row][column]."""
    flat = [sum(c[i][j] ** 2 for c in channels) for i in range(len(channels[0])) for j in range(len(channels[0][0]))]
    norm = math.sqrt(sum(v * v for v in flat))
    return [v / norm for v in flat]


def pool_by_hand(grid):
    """A 4x4 grid -> 2x2: the mean of each 2x2 block (adaptive average pooling by two)."""
    return [[sum(grid[2 * i + a][2 * j + b] for a in (0, 1) for b in (0, 1)) / 4 for j in (0, 1)] for i in (0, 1)]


def squared_distance_by_hand(q_s, q_t):
    """The mean over the batch (1) and the positions of (q_s - q_t)^2."""
    return sum((a - b) ** 2 for a, b in zip(q_s, q_t)) / len(q_s)


# One teacher sample, 1 channel, 4x4, signed: its 2x2 blocks average to 0, 2, 1.5 and 0, while their
# squares average to 1, 4, 4.5 and 0.5, so pooling before or after squaring gives different maps.
SIGNED_TEACHER = [[[1.0, -1.0, 2.0, 2.0], [-1.0, 1.0, 2.0, 2.0], [0.0, 3.0, 1.0, 0.0], [3.0, 0.0, 0.0, -1.0]]]


@pytest.mark.parametrize("resize", ["features", "attention"])
def test_attention_transfer_matches_normalised_squared_attention_maps(resize):
    """Equal sizes, where both conventions are the paper's equation. Catches a wrong channel
    reduction, a missing L2 normalisation, a sum where the mean belongs, or a `resize` branch that
    alters maps that need no resizing."""
    expected = squared_distance_by_hand(attention_by_hand(S), attention_by_hand(T))
    loss = create_loss("at", resize=resize)
    value = loss(outputs(torch.tensor([S])), outputs(torch.tensor([T])), {})
    assert value.item() == pytest.approx(expected)


def test_attention_transfer_by_default_pools_the_larger_features_first():
    """Teacher 4x4, student 2x2, default convention (RepDistiller's AT.py): the teacher's features are
    average-pooled to 2x2, then squared and summed over channels. Catches a default that pools the
    attention map instead, pooling the wrong (smaller) side, or max- instead of average-pooling."""
    teacher = [[[(4 * i + j) / 10 for j in range(4)] for i in range(4)], [[(i - j) / 4 for j in range(4)] for i in range(4)]]
    pooled = [pool_by_hand(channel) for channel in teacher]  # (2 channels, 2, 2)
    expected = squared_distance_by_hand(attention_by_hand(S), attention_by_hand(pooled))
    loss = create_loss("at")
    assert loss.resize == "features"
    assert loss(outputs(torch.tensor([S])), outputs(torch.tensor([teacher])), {}).item() == pytest.approx(expected, rel=1e-6)


def test_attention_transfer_can_pool_the_larger_attention_map():
    """Teacher 4x4, student 2x2, resize="attention": the teacher's attention map sum_c A_c^2 is
    pooled to 2x2. Catches the option being ignored (features pooled anyway)."""
    teacher = [[[(4 * i + j) / 10 for j in range(4)] for i in range(4)], [[(i - j) / 4 for j in range(4)] for i in range(4)]]
    squares = [[sum(c[i][j] ** 2 for c in teacher) for j in range(4)] for i in range(4)]
    pooled = [v for row in pool_by_hand(squares) for v in row]
    norm = math.sqrt(sum(v * v for v in pooled))
    expected = squared_distance_by_hand(attention_by_hand(S), [v / norm for v in pooled])
    loss = create_loss("at", resize="attention")
    assert loss(outputs(torch.tensor([S])), outputs(torch.tensor([teacher])), {}).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("larger", ["teacher", "student"])
def test_attention_transfer_conventions_differ_on_signed_maps(larger):
    """A signed 4x4 map against a 2x2 one, with either side the larger: pooled features give the
    attention map (0, 4, 2.25, 0), pooled squares (1, 4, 4.5, 0.5). Catches the two conventions
    collapsing into one, and resizing that only ever pools the teacher."""
    small = [[[1.0, 2.0], [0.0, 1.0]]]
    by_features = squared_distance_by_hand(attention_by_hand(small), attention_by_hand([[[0.0, 2.0], [1.5, 0.0]]]))
    squares = [1.0, 4.0, 4.5, 0.5]
    norm = math.sqrt(sum(v * v for v in squares))
    by_attention = squared_distance_by_hand(attention_by_hand(small), [v / norm for v in squares])
    assert abs(by_features - by_attention) > 0.4 * by_attention  # 0.089 against 0.163: the case separates them
    big, small = torch.tensor([SIGNED_TEACHER]), torch.tensor([small])
    student, teacher = (small, big) if larger == "teacher" else (big, small)
    values = {resize: create_loss("at", resize=resize)(outputs(student), outputs(teacher), {}).item() for resize in ("features", "attention")}
    assert values["features"] == pytest.approx(by_features, rel=1e-6)
    assert values["attention"] == pytest.approx(by_attention, rel=1e-6)


def test_attention_transfer_refuses_an_unknown_resize():
    """Catches a typo such as resize="feature" silently falling back to one of the conventions."""
    with pytest.raises(PotstillError, match="loss 'at' needs resize to be one of 'features', 'attention'"):
        create_loss("at", resize="feature")


def test_attention_p_changes_the_map_and_bad_p_is_refused():
    s, t = torch.tensor([S]), torch.tensor([T])
    assert create_loss("at", p=4.0)(outputs(s), outputs(t), {}) != create_loss("at")(outputs(s), outputs(t), {})
    with pytest.raises(PotstillError, match="loss 'at' needs p > 0"):
        create_loss("at", p=0.0)
