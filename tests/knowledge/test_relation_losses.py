"""SP, RKD, PKT, CC, NST and IRG against their papers' equations, worked out in plain Python on
small batches whose student and teacher features differ in dimension."""

import math

import pytest
import torch

from potstill.errors import PotstillError
from potstill.knowledge import LOSSES, Probe, create_loss

# four instances; the student's features have 2 dimensions, the teacher's 3
STUDENT = [[1.0, 2.0], [0.5, -1.0], [-1.5, 0.3], [2.0, 2.5]]
TEACHER = [[0.2, 1.0, -0.4], [1.5, -0.3, 0.8], [-0.7, 0.9, 0.1], [1.1, 1.2, -2.0]]
STUDENT_LOGITS = [[1.0, 0.0, -1.0], [0.3, 2.0, 0.1], [-0.5, 0.5, 1.5], [2.0, -1.0, 0.0]]
TEACHER_LOGITS = [[2.0, -0.5, -1.0], [0.0, 3.0, 0.5], [-1.0, 0.2, 2.5], [1.0, -2.0, 0.5]]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def unit(a):
    length = math.sqrt(dot(a, a))
    return [x / length for x in a]


def minus(a, b):
    return [x - y for x, y in zip(a, b)]


def smooth_l1(a, b):
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def run(name, student, teacher, student_logits=STUDENT_LOGITS, teacher_logits=TEACHER_LOGITS, **kwargs):
    """The loss on lists of feature tensors (one per layer pair)."""
    loss = create_loss(name, **kwargs)
    s = {"logits": torch.tensor(student_logits), "features": [torch.tensor(f) for f in student]}
    t = {"logits": torch.tensor(teacher_logits), "features": [torch.tensor(f) for f in teacher]}
    return loss(s, t, {}).item()


@pytest.mark.parametrize("name,kind,pairing,weight", [
    ("sp", "relation", "last_stage", 3000.0), ("rkd", "relation", "embedding", 1.0),
    ("pkt", "relation", "embedding", 30000.0), ("cc", "relation", "embedding", 1.0),
    ("nst", "feature", "stages", 50.0), ("irg", "relation", "stages", 1.0),
])
def test_registration(name, kind, pairing, weight):
    cls = LOSSES.get(name)
    assert (cls.kind, cls.pairing, cls.default_weight) == (kind, pairing, weight)


# ---- SP
def sp_by_hand(s, t):
    def matrix(q):
        rows = [[dot(a, b) for b in q] for a in q]
        return [unit(row) for row in rows]
    g_s, g_t = matrix(s), matrix(t)
    return sum((x - y) ** 2 for r_s, r_t in zip(g_s, g_t) for x, y in zip(r_s, r_t)) / len(s) ** 2


def test_sp_matches_the_row_normalised_gram_equation_and_sums_pairs():
    assert run("sp", [STUDENT], [TEACHER]) == pytest.approx(sp_by_hand(STUDENT, TEACHER), rel=1e-5)
    two = run("sp", [STUDENT, TEACHER], [TEACHER, STUDENT[::-1]])
    assert two == pytest.approx(sp_by_hand(STUDENT, TEACHER) + sp_by_hand(TEACHER, STUDENT[::-1]), rel=1e-5)


def test_sp_flattens_feature_maps():
    maps = torch.randn(4, 3, 2, 2)
    value = run("sp", [maps.tolist()], [TEACHER])
    assert value == pytest.approx(sp_by_hand(maps.flatten(1).tolist(), TEACHER), rel=1e-5)


# ---- RKD
def rkd_by_hand(s, t, distance_weight, angle_weight):
    n = len(s)

    def distances(x):
        d = [[math.dist(a, b) for b in x] for a in x]
        mean = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        return [[v / mean for v in row] for row in d]

    def angles(x):  # [j][i][k]: angle at x_j, 0 when a vertex repeats j
        return [[[dot(unit(minus(x[i], x[j])), unit(minus(x[k], x[j]))) if i != j and k != j else 0.0
                  for k in range(n)] for i in range(n)] for j in range(n)]

    d_s, d_t = distances(s), distances(t)
    a_s, a_t = angles(s), angles(t)
    distance = sum(smooth_l1(d_s[i][j], d_t[i][j]) for i in range(n) for j in range(n)) / n**2
    angle = sum(smooth_l1(a_s[j][i][k], a_t[j][i][k]) for j in range(n) for i in range(n) for k in range(n)) / n**3
    return distance_weight * distance + angle_weight * angle


@pytest.mark.parametrize("distance_weight,angle_weight", [(25.0, 50.0), (1.0, 0.0), (0.0, 1.0)])
def test_rkd_matches_distance_and_angle_potentials(distance_weight, angle_weight):
    # a teacher far from the origin with a large spread: the huber loss leaves its quadratic zone
    far = [[10 * x + 100 for x in row] for row in TEACHER]
    for teacher in (TEACHER, far):
        expected = rkd_by_hand(STUDENT, teacher, distance_weight, angle_weight)
        value = run("rkd", [STUDENT], [teacher], distance_weight=distance_weight, angle_weight=angle_weight)
        assert value == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_rkd_ignores_scale_rotation_shift_and_dimension():
    # the teacher is the student rotated, scaled by 3, shifted and embedded in 3 dimensions
    c, s = math.cos(0.7), math.sin(0.7)
    teacher = [[3 * (c * x - s * y) + 1, 3 * (s * x + c * y) - 2, 5.0] for x, y in STUDENT]
    assert run("rkd", [STUDENT], [teacher]) == pytest.approx(0.0, abs=1e-5)
    assert run("rkd", [STUDENT], [TEACHER]) > 0.1


@pytest.mark.parametrize("batch_size", [1, 2])
def test_rkd_is_finite_for_tiny_batches(batch_size):
    student = torch.randn(batch_size, 5, requires_grad=True)
    value = create_loss("rkd")({"features": [student]}, {"features": [torch.randn(batch_size, 7)]}, {})
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()


# ---- PKT
def pkt_by_hand(s, t, eps=1e-7):
    def conditional(x):
        x = [unit(v) for v in x]
        kernel = [[(dot(a, b) + 1) / 2 for b in x] for a in x]
        return [[k / sum(row) for k in row] for row in kernel]
    p, q = conditional(s), conditional(t)
    n = len(s)
    return sum(q[i][j] * math.log((q[i][j] + eps) / (p[i][j] + eps)) for i in range(n) for j in range(n)) / n**2


def test_pkt_matches_the_kl_of_cosine_kernel_conditionals():
    assert run("pkt", [STUDENT], [TEACHER]) == pytest.approx(pkt_by_hand(STUDENT, TEACHER), rel=1e-4)
    assert run("pkt", [TEACHER], [TEACHER]) == pytest.approx(0.0, abs=1e-7)


# ---- CC
def cc_by_hand(s, t, gamma, order):
    def correlation(x):
        x = [unit(v) for v in x]
        return [[sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * dot(a, b) ** p
                     for p in range(order + 1)) for b in x] for a in x]
    c_s, c_t = correlation(s), correlation(t)
    return sum((x - y) ** 2 for r_s, r_t in zip(c_s, c_t) for x, y in zip(r_s, r_t)) / len(s) ** 2


@pytest.mark.parametrize("gamma,order", [(0.4, 2), (1.0, 1), (0.2, 4)])
def test_cc_matches_the_taylor_rbf_correlation(gamma, order):
    expected = cc_by_hand(STUDENT, TEACHER, gamma, order)
    assert run("cc", [STUDENT], [TEACHER], gamma=gamma, order=order) == pytest.approx(expected, rel=1e-4)


def test_cc_with_a_high_order_is_the_gaussian_rbf_kernel():
    def rbf(x, gamma=0.4):
        x = [unit(v) for v in x]
        return [[math.exp(-gamma * math.dist(a, b) ** 2) for b in x] for a in x]
    c_s, c_t = rbf(STUDENT), rbf(TEACHER)
    exact = sum((x - y) ** 2 for r_s, r_t in zip(c_s, c_t) for x, y in zip(r_s, r_t)) / 16
    assert run("cc", [STUDENT], [TEACHER], order=12) == pytest.approx(exact, rel=1e-4)


# ---- NST
def nst_by_hand(s, t, degree=2, constant=0.0):
    """s, t: per sample, a list of channels, each a list of positions."""
    def k_mean(a, b):
        return sum((dot(x, y) + constant) ** degree for x in a for y in b) / (len(a) * len(b))
    total = 0.0
    for s_channels, t_channels in zip(s, t):
        f_s, f_t = [unit(c) for c in s_channels], [unit(c) for c in t_channels]
        total += k_mean(f_t, f_t) + k_mean(f_s, f_s) - 2 * k_mean(f_s, f_t)
    return total / len(s)


# two samples, student 2 channels, teacher 3 channels, 1 x 3 positions
NST_STUDENT = [[[1.0, 0.5, 0.0], [0.2, 0.1, 2.0]], [[0.0, 1.0, 1.0], [3.0, 0.2, 0.4]]]
NST_TEACHER = [[[0.5, 0.5, 0.1], [1.0, 0.0, 0.3], [0.2, 2.0, 0.2]], [[0.1, 0.1, 1.0], [2.0, 1.0, 0.0], [0.4, 0.3, 0.2]]]


def as_maps(samples):
    return [[[channel] for channel in sample] for sample in samples]  # (B, C, 1, N)


@pytest.mark.parametrize("degree,constant", [(2, 0.0), (3, 0.5), (1, 0.0)])
def test_nst_matches_squared_mmd_with_a_polynomial_kernel(degree, constant):
    expected = nst_by_hand(NST_STUDENT, NST_TEACHER, degree, constant)
    value = run("nst", [as_maps(NST_STUDENT)], [as_maps(NST_TEACHER)], degree=degree, constant=constant)
    assert value == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_nst_pools_the_larger_map_and_sums_pairs():
    student, teacher = torch.rand(2, 3, 2, 2), torch.rand(2, 4, 4, 4)
    pooled = torch.nn.functional.avg_pool2d(teacher, 2)
    expected = nst_by_hand(student.flatten(2).tolist(), pooled.flatten(2).tolist())
    assert run("nst", [student.tolist()], [teacher.tolist()]) == pytest.approx(expected, rel=1e-4)
    assert run("nst", [student.tolist()] * 2, [teacher.tolist()] * 2) == pytest.approx(2 * expected, rel=1e-4)


def test_nst_needs_feature_maps():
    probe = Probe("nst", [torch.randn(2, 4)], [torch.randn(2, 4, 2, 2)], ["fc"], ["layer1"], 3, 10)
    with pytest.raises(PotstillError, match="feature maps"):
        create_loss("nst").setup(probe)


# ---- IRG
def irg_by_hand(s_layers, t_layers, vertex_weight, edge_weight, transform_weight):
    def edges(x):
        d = [[math.dist(a, b) ** 2 for b in x] for a in x]
        largest = max(max(row) for row in d)
        return [[v / largest for v in row] for row in d]

    def mse(a, b):
        pairs = [(x, y) for r_a, r_b in zip(a, b) for x, y in zip(r_a, r_b)]
        return sum((x - y) ** 2 for x, y in pairs) / len(pairs)

    def change(a, b):
        return [[y - x for x, y in zip(r_a, r_b)] for r_a, r_b in zip(a, b)]

    vertex = mse(STUDENT_LOGITS, TEACHER_LOGITS)
    e_s, e_t = [edges(x) for x in s_layers], [edges(x) for x in t_layers]
    edge = sum(mse(a, b) for a, b in zip(e_s, e_t)) / len(e_s)
    steps = range(len(e_s) - 1)
    transform = sum(mse(change(e_s[i], e_s[i + 1]), change(e_t[i], e_t[i + 1])) for i in steps) / max(len(steps), 1)
    return vertex_weight * vertex + edge_weight * edge + transform_weight * transform


@pytest.mark.parametrize("weights", [(0.1, 5.0, 5.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)])
def test_irg_matches_vertex_edge_and_transformation_terms(weights):
    s_layers = [STUDENT, [[x * x, x - y, 1.0] for x, y in STUDENT], [[x + y] for x, y in STUDENT]]
    t_layers = [TEACHER, [[a * b, c] for a, b, c in TEACHER], [[a, b - c, a * c, 2.0] for a, b, c in TEACHER]]
    kwargs = dict(zip(("vertex_weight", "edge_weight", "transform_weight"), weights))
    expected = irg_by_hand(s_layers, t_layers, *weights)
    assert run("irg", s_layers, t_layers, **kwargs) == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_irg_with_one_pair_has_no_transformation_term():
    expected = irg_by_hand([STUDENT], [TEACHER], 0.1, 5.0, 5.0)
    assert run("irg", [STUDENT], [TEACHER]) == pytest.approx(expected, rel=1e-4)
    assert run("irg", [STUDENT], [TEACHER], vertex_weight=0.0, edge_weight=0.0) == 0.0


# ---- shared behaviour
RELATIONS = ["sp", "rkd", "pkt", "cc", "irg"]


@pytest.mark.parametrize("name", RELATIONS)
@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_relation_losses_take_maps_or_vectors_of_any_dimension(name, batch_size):
    student = torch.randn(batch_size, 3, 4, 4, requires_grad=True)
    loss = create_loss(name)
    s = {"logits": torch.randn(batch_size, 5), "features": [student, student.mean(dim=(2, 3))]}
    t = {"logits": torch.randn(batch_size, 5), "features": [torch.randn(batch_size, 11), torch.randn(batch_size, 6, 2, 2)]}
    value = loss(s, t, {})
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value) and torch.isfinite(student.grad).all()


@pytest.mark.parametrize("name,kwargs", [
    ("rkd", {"distance_weight": -1.0}), ("rkd", {"angle_weight": float("nan")}),
    ("pkt", {"eps": 0.0}), ("cc", {"gamma": 0.0}), ("cc", {"order": 0}), ("cc", {"order": 1.5}),
    ("cc", {"order": True}), ("nst", {"degree": 0}), ("nst", {"degree": 2.5}), ("nst", {"constant": -1.0}),
    ("irg", {"vertex_weight": -0.1}), ("irg", {"transform_weight": -5.0}),
])
def test_bad_hyperparameters_are_clear_errors(name, kwargs):
    with pytest.raises(PotstillError, match=name):
        create_loss(name, **kwargs)
