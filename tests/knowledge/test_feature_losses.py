"""VID, OFD, AB and FSP against their papers' equations, worked out by hand on small tensors."""

import math

import pytest
import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.knowledge import LOSSES, Probe, create_loss
from potstill.knowledge.adapters import FeatureAdapter
from tests.knowledge.nets import make_task


def probe(name, student, teacher, adapters=True):
    names = [f"layer{i}" for i in range(len(student))]
    return Probe(name, student, teacher, names, list(names), num_classes=5, num_samples=10, adapters=adapters)


def wired(name, student, teacher, adapters=False, **kwargs):
    """A loss set up on these very features (adapters off: identity connectors where shapes agree)."""
    loss = create_loss(name, **kwargs)
    loss.setup(probe(name, student, teacher, adapters))
    return loss


def value(loss, student, teacher):
    return loss({"features": student}, {"features": teacher}, {}).item()


def grid(values, channels=1):
    """Flat list -> (1, channels, 1, n / channels) map."""
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, -1)


# ---------------------------------------------------------------- VID
def test_vid_is_the_gaussian_negative_log_likelihood():
    # identity mean (adapters off, equal channels), sigma^2 = 5: mean of 0.5 (ln 5 + (t - s)^2 / 5)
    s, t = grid([0.0, 1.0]), grid([1.0, 4.0])
    expected = (0.5 * (math.log(5) + 1 / 5) + 0.5 * (math.log(5) + 9 / 5)) / 2
    assert value(wired("vid", [s], [t]), [s], [t]) == pytest.approx(expected, rel=1e-5)


def test_vid_variance_starts_at_init_variance_and_follows_softplus():
    s, t = grid([0.0]), grid([2.0])
    loss = wired("vid", [s], [t], init_variance=3.0)
    assert (nn.functional.softplus(loss.log_scales[0]) + 1e-5).item() == pytest.approx(3.0, rel=1e-6)
    with torch.no_grad():
        loss.log_scales[0].fill_(0.0)  # sigma^2 = ln 2 + eps
    variance = math.log(2) + 1e-5
    assert value(loss, [s], [t]) == pytest.approx(0.5 * (math.log(variance) + 4 / variance), rel=1e-5)


def test_vid_regressor_is_three_1x1_convs_with_relu_between():
    s, t = grid([-1.0, 2.0], channels=2), grid([0.0, 0.0], channels=2)
    loss = wired("vid", [s], [t], adapters=True)
    convs = [m for m in loss.regressors[0] if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(2, 2, (1, 1))] * 3
    with torch.no_grad():
        for conv in convs:
            conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
    # mu(s) = relu(s) = [0, 2]: 0.5 (ln 5 + 0) and 0.5 (ln 5 + 4 / 5)
    expected = (0.5 * math.log(5) + 0.5 * (math.log(5) + 4 / 5)) / 2
    assert value(loss, [s], [t]) == pytest.approx(expected, rel=1e-5)


def test_vid_pools_the_larger_map_before_the_regressor():
    s = torch.tensor([[1.0, 3.0], [5.0, 7.0]]).view(1, 1, 2, 2)  # pooled: 4
    t = torch.tensor([[6.0]]).view(1, 1, 1, 1)
    assert value(wired("vid", [s], [t]), [s], [t]) == pytest.approx(0.5 * (math.log(5) + 4 / 5), rel=1e-5)
    # through the ReLU regressor (unit weights): pooling first gives mu = relu(-1) = 0, pooling after would give 1
    s, t = torch.tensor([-4.0, 2.0, -2.0, 0.0]).view(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)
    loss = wired("vid", [s], [t], adapters=True)
    with torch.no_grad():
        for conv in loss.regressors[0][::2]:
            conv.weight.fill_(1.0)
    assert value(loss, [s], [t]) == pytest.approx(0.5 * math.log(5), rel=1e-5)


def test_vid_accepts_vectors_and_rejects_a_student_vector_for_a_teacher_map():
    s, t = torch.randn(4, 3), torch.randn(4, 6)
    loss = wired("vid", [s], [t], adapters=True)
    assert isinstance(loss.regressors[0][0], nn.Linear) and torch.isfinite(loss({"features": [s]}, {"features": [t]}, {}))
    with pytest.raises(PotstillError, match="student vector cannot predict a teacher map"):
        wired("vid", [s], [torch.randn(4, 6, 2, 2)], adapters=True)


def test_vid_without_adapters_rejects_a_channel_mismatch_naming_the_pair():
    with pytest.raises(PotstillError, match=r"layer0 \(3, 2, 2\).*distill.adapters"):
        wired("vid", [torch.randn(2, 3, 2, 2)], [torch.randn(2, 4, 2, 2)], adapters=False)


@pytest.mark.parametrize("kwargs", [{"init_variance": 0.0}, {"eps": 0.0}, {"init_variance": 1e-6, "eps": 1e-5}])
def test_vid_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(PotstillError):
        create_loss("vid", **kwargs)


# ---------------------------------------------------------------- OFD
def ofd_pair_by_hand(s, t):
    """Margin = mean of t's negatives (one channel); partial L2 skips s <= t' <= 0."""
    negatives = [v for v in t if v < 0]
    margin = sum(negatives) / len(negatives) if negatives else 0.0
    total = 0.0
    for sv, tv in zip(s, t):
        target = max(tv, margin)
        if not sv <= target <= 0:
            total += (sv - target) ** 2
    return total


def test_ofd_margin_relu_and_partial_l2_with_the_depth_weights():
    # pair 0: t negatives -1, -3 -> margin -2; t' = [-2, -2, 2, -2]
    #   s = [-3, 0, 1, -2]: -3 <= -2 skipped, (0+2)^2 = 4, (1-2)^2 = 1, -2 <= -2 skipped -> 5
    # pair 1: no negatives -> margin 0; t' = [0, 1]; s = [0.5, -1]: 0.25 + 4 = 4.25
    s0, t0, s1, t1 = [-3.0, 0.0, 1.0, -2.0], [-1.0, -3.0, 2.0, 0.0], [0.5, -1.0], [0.0, 1.0]
    assert ofd_pair_by_hand(s0, t0) == 5.0 and ofd_pair_by_hand(s1, t1) == 4.25
    student, teacher = [grid(s0), grid(s1)], [grid(t0), grid(t1)]
    expected = 0.5 * 5.0 + 1.0 * 4.25  # weights 2^-(n-1-i): the deepest pair counts 1
    assert value(wired("ofd", student, teacher), student, teacher) == pytest.approx(expected, rel=1e-6)


def test_ofd_divides_by_the_batch_size_and_keeps_per_channel_margins():
    t = torch.tensor([[-1.0, -3.0], [4.0, 5.0]]).view(1, 2, 1, 2)  # channel 0 margin -2, channel 1 margin 0
    loss = wired("ofd", [t], [t])
    assert loss.margin_0.flatten().tolist() == [-2.0, 0.0]
    s, teacher = torch.zeros(2, 2, 1, 2), t.expand(2, 2, 1, 2)
    # per sample: channel 0 t' = [-1, -2], s = 0 > t' -> 1 + 4; channel 1 t' = [4, 5] -> 16 + 25
    assert value(loss, [s], [teacher]) == pytest.approx(46.0, rel=1e-6)
    assert "margin_0" in loss.state_dict()


def test_ofd_always_learns_a_connector_and_needs_maps():
    x = torch.randn(2, 3, 2, 2)
    assert isinstance(wired("ofd", [x], [x], adapters=True).connectors[0], FeatureAdapter)
    with pytest.raises(PotstillError, match="needs feature maps"):
        wired("ofd", [torch.randn(2, 3)], [torch.randn(2, 3)])
    with pytest.raises(PotstillError):
        create_loss("ofd", margin=1.0)  # margins come from the teacher, not a hyperparameter
    assert LOSSES.get("ofd").default_weight == 1e-3


# ---------------------------------------------------------------- AB
def ab_pair_by_hand(s, t, margin):
    return sum(max(margin - sv, 0) ** 2 if tv > 0 else max(margin + sv, 0) ** 2 for sv, tv in zip(s, t))


def test_ab_margin_hinge_on_the_activation_boundary():
    # t > 0 at 0, 3: (1 - .5)^2 = .25, 1 - 3 < 0 -> 0; t <= 0 at 1, 2: (1 - .2)^2 = .64, 1 - 2 < 0 -> 0
    s0, t0, s1, t1 = [0.5, -0.2, -2.0, 3.0], [1.0, -1.0, 0.0, 2.0], [0.0, 2.0], [-1.0, 3.0]
    assert ab_pair_by_hand(s0, t0, 1.0) == pytest.approx(0.89)
    assert ab_pair_by_hand(s1, t1, 1.0) == pytest.approx(1.0)  # (1 + 0)^2 + 0
    student, teacher = [grid(s0), grid(s1)], [grid(t0), grid(t1)]
    expected = 0.5 * 0.89 + 1.0 * 1.0
    assert value(wired("ab", student, teacher), student, teacher) == pytest.approx(expected, rel=1e-6)
    expected = 0.5 * ab_pair_by_hand(s0, t0, 0.5) + ab_pair_by_hand(s1, t1, 0.5)
    assert value(wired("ab", student, teacher, margin=0.5), student, teacher) == pytest.approx(expected, rel=1e-6)


def test_ab_is_a_per_sample_sum():
    s, t = torch.zeros(3, 1, 1, 2), torch.tensor([1.0, -1.0]).view(1, 1, 1, 2).expand(3, 1, 1, 2)
    assert value(wired("ab", [s], [t]), [s], [t]) == pytest.approx(2.0, rel=1e-6)  # 1 + 1 per sample


def test_ab_rejects_a_negative_margin_and_learns_a_connector():
    with pytest.raises(PotstillError, match="margin"):
        create_loss("ab", margin=-1.0)
    x = torch.randn(2, 3, 2, 2)
    assert isinstance(wired("ab", [x], [x], adapters=True).connectors[0], FeatureAdapter)


# ---------------------------------------------------------------- FSP
def gram_by_hand(first, second):
    """first, second: lists of channels, each a list of positions."""
    return [[sum(a * b for a, b in zip(c1, c2)) / len(c1) for c2 in second] for c1 in first]


def test_fsp_matches_gram_matrices_between_consecutive_layers():
    # student: F1 two channels [1, 2], [0, 1]; F2 one channel [3, -1] -> G_S = [[0.5], [-0.5]]
    # teacher: F1 [1, 1], [2, 0]; F2 [1, 1] -> G_T = [[1], [1]]
    s1, s2, t1, t2 = [[1.0, 2.0], [0.0, 1.0]], [[3.0, -1.0]], [[1.0, 1.0], [2.0, 0.0]], [[1.0, 1.0]]
    g_s, g_t = gram_by_hand(s1, s2), gram_by_hand(t1, t2)
    assert g_s == [[0.5], [-0.5]] and g_t == [[1.0], [1.0]]
    expected = ((0.5 - 1) ** 2 + (-0.5 - 1) ** 2) / 2
    student = [torch.tensor([s1]).unsqueeze(2), torch.tensor([s2]).unsqueeze(2)]  # (1, C, 1, 2)
    teacher = [torch.tensor([t1]).unsqueeze(2), torch.tensor([t2]).unsqueeze(2)]
    assert value(wired("fsp", student, teacher), student, teacher) == pytest.approx(expected, rel=1e-6)


def test_fsp_averages_over_pairs_and_pools_the_larger_map():
    # F1 (1, 1, 2, 2) = [[2, 4], [6, 8]] pooled to 5 against F2 (1, 1, 1, 1) = 1 -> G = 5; then G(F2, F3) = 1 * 3
    student = [torch.tensor([2.0, 4, 6, 8]).view(1, 1, 2, 2), torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 3.0)]
    teacher = [torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)]
    assert value(wired("fsp", student, teacher), student, teacher) == pytest.approx((25 + 9) / 2, rel=1e-6)


def test_fsp_adapts_only_layers_whose_channels_differ():
    student = [torch.randn(2, 3, 4, 4), torch.randn(2, 6, 2, 2)]
    teacher = [torch.randn(2, 5, 4, 4), torch.randn(2, 6, 4, 4)]
    loss = wired("fsp", student, teacher, adapters=True)
    assert isinstance(loss.adapters[0], FeatureAdapter) and isinstance(loss.adapters[1], nn.Identity)
    with pytest.raises(PotstillError, match=r"layer0 \(3, 4, 4\).*distill.adapters is false"):
        wired("fsp", student, teacher, adapters=False)


def test_fsp_needs_two_layer_pairs_and_maps():
    with pytest.raises(PotstillError, match="at least 2 layer pairs"):
        make_task("fsp", pairs="last_stage")
    with pytest.raises(PotstillError, match="needs feature maps"):
        wired("fsp", [torch.randn(2, 3)] * 2, [torch.randn(2, 3)] * 2)
    with pytest.raises(PotstillError):
        create_loss("fsp", weight=2.0)  # weights live in the recipe
