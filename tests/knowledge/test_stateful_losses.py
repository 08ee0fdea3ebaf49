"""Losses with state or stages: Factor Transfer (paraphraser pre-training), CRD (memory banks) and
the LSR virtual teacher, against their equations worked out in plain Python."""

import math

import pytest
import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.knowledge import Probe, create_loss
from tests.knowledge.nets import make_batch, make_task


def probe(name, student, teacher, num_samples=10):
    return Probe(name, [student], [teacher], ["s"], ["t"], num_classes=3, num_samples=num_samples)


def unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


# ---------------------------------------------------------------- ft


def ft_loss(student_shape=(2, 3, 4, 4), teacher_shape=(2, 4, 4, 4), **kwargs):
    torch.manual_seed(0)
    loss = create_loss("ft", **kwargs)
    s, t = torch.randn(student_shape).relu(), torch.randn(teacher_shape).relu()
    loss.setup(probe("ft", s, t))
    return loss, {"features": [s]}, {"features": [t]}


def test_ft_matches_the_normalised_l1_distance_of_factors():
    loss, _, _ = ft_loss()
    loss.finish_preparation()
    loss.encoders[0], loss.translators[0] = nn.Identity(), nn.Identity()  # factors = the maps themselves
    student = torch.tensor([[[[3.0, 4.0]]], [[[1.0, 1.0]]]])  # (2, 1, 1, 2)
    teacher = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 2.0]]]])
    expected = 0.0
    for s, t in (([3.0, 4.0], [1.0, 0.0]), ([1.0, 1.0], [0.0, 2.0])):
        expected += sum(abs(a - b) for a, b in zip(unit(s), unit(t)))
    expected /= 4  # mean over the 2 x 2 elements
    value = loss({"features": [student]}, {"features": [teacher]}, {})
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_ft_preparation_trains_the_paraphraser_then_freezes_it():
    loss, student, teacher = ft_loss(paraphraser_epochs=7)
    assert loss.prepare_epochs == 7
    assert all(p.requires_grad for p in loss.paraphraser_parameters())  # the preparation optimizer takes them
    t = teacher["features"][0]
    reconstruction = loss.preparation_loss(teacher)
    assert reconstruction.item() == pytest.approx(((loss.decoders[0](loss.encoders[0](t)) - t) ** 2).mean().item())
    reconstruction.backward()
    assert all(p.grad is not None for p in loss.paraphraser_parameters())
    assert all(p.grad is None for p in loss.translators.parameters())

    online = loss(student, teacher, {}).item()  # before freezing: reconstruction + FT
    loss.finish_preparation()
    loss.train()
    assert not loss.encoders.training and loss.translators.training
    assert not any(p.requires_grad for p in loss.paraphraser_parameters())
    distilled = loss(student, teacher, {})
    assert online == pytest.approx(distilled.item() + reconstruction.item(), rel=1e-5)
    loss.zero_grad()
    distilled.backward()
    assert all(p.grad is None for p in loss.paraphraser_parameters())
    assert all(p.grad is not None for p in loss.translators.parameters())


def test_ft_factor_size_and_spatial_mismatch():
    loss, student, teacher = ft_loss(student_shape=(2, 3, 2, 2), teacher_shape=(2, 6, 4, 4), rate=0.5)
    assert loss.encoders[0](teacher["features"][0]).shape == (2, 3, 4, 4)
    assert loss.translators[0](student["features"][0]).shape == (2, 3, 2, 2)  # resized to 4 x 4 in forward
    assert torch.isfinite(loss(student, teacher, {}))


@pytest.mark.parametrize(
    "kwargs", [{"rate": 0.0}, {"rate": -1.0}, {"paraphraser_epochs": -1}, {"paraphraser_epochs": 2.5}]
)
def test_ft_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(PotstillError):
        create_loss("ft", **kwargs)


def test_ft_needs_feature_maps():
    with pytest.raises(PotstillError, match="feature maps"):
        create_loss("ft").setup(probe("ft", torch.randn(2, 5), torch.randn(2, 5)))


# ---------------------------------------------------------------- crd

S = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]  # student embeddings (unit vectors, identity heads)
T = [[0.8, 0.6], [1.0, 0.0], [0.0, 1.0]]
MEMORY_S = [[0.0, 1.0], [0.6, -0.8], [-1.0, 0.0]]
MEMORY_T = [[1.0, 0.0], [0.0, -1.0], [0.8, 0.6]]
ROWS = [[0, 1, 2], [1, 2, 0], [2, 0, 1]]  # positive first, then K = 2 negatives


def crd_loss(temperature=0.5, momentum=0.5):
    loss = create_loss("crd", feature_dim=2, negatives=2, temperature=temperature, momentum=momentum)
    loss.setup(probe("crd", torch.zeros(3, 2), torch.zeros(3, 2), num_samples=3))
    loss.embed_student, loss.embed_teacher = nn.Identity(), nn.Identity()
    loss.memory_student.copy_(torch.tensor(MEMORY_S))
    loss.memory_teacher.copy_(torch.tensor(MEMORY_T))
    return loss


def nce_by_hand(anchors, memory, temperature, n=3, k=2, eps=1e-7):
    scores = [
        [math.exp(sum(a * m for a, m in zip(anchor, memory[j])) / temperature) for j in rows]
        for anchor, rows in zip(anchors, ROWS)
    ]
    z = sum(map(sum, scores)) / (len(scores) * (k + 1)) * n  # mean score x N, from this first batch
    total = 0.0
    for row in scores:
        p = [x / z for x in row]
        total += math.log(p[0] / (p[0] + k / n + eps)) + sum(math.log((k / n) / (q + k / n + eps)) for q in p[1:])
    return -total / len(scores), z


def test_crd_matches_the_nce_objective_by_hand():
    loss = crd_loss().eval()
    loss.candidates = lambda index: torch.tensor(ROWS)
    value = loss({"features": [torch.tensor(S)]}, {"features": [torch.tensor(T)]}, {"index": torch.tensor([0, 1, 2])})
    student_anchor, z_s = nce_by_hand(S, MEMORY_T, 0.5)
    teacher_anchor, z_t = nce_by_hand(T, MEMORY_S, 0.5)
    assert value.item() == pytest.approx(student_anchor + teacher_anchor, rel=1e-5)
    assert loss.normalizers.tolist() == pytest.approx([z_s, z_t], rel=1e-5)  # Z kept for later batches
    assert torch.equal(loss.memory_student, torch.tensor(MEMORY_S))  # eval mode: memories fixed


def test_crd_updates_memory_with_momentum_then_renormalises_in_training():
    loss = crd_loss(momentum=0.25).train()
    index = torch.tensor([0, 2])
    loss({"features": [torch.tensor([S[0], S[2]])]}, {"features": [torch.tensor([T[0], T[2]])]}, {"index": index})
    for memory, old, new in ((loss.memory_student, MEMORY_S, S), (loss.memory_teacher, MEMORY_T, T)):
        for i in (0, 2):
            assert memory[i].tolist() == pytest.approx(
                unit([0.25 * o + 0.75 * v for o, v in zip(old[i], new[i])]), abs=1e-6
            )
        assert memory[1].tolist() == pytest.approx(old[1])  # not in the batch: untouched


def test_crd_eval_is_deterministic_and_negatives_exclude_the_positive():
    loss = create_loss("crd")
    loss.setup(probe("crd", torch.randn(4, 6), torch.randn(4, 5), num_samples=10))
    assert loss.k == 9  # 16384 negatives clamped to N - 1
    index = torch.tensor([3, 0, 9, 5])
    rows = loss.candidates(index)
    assert rows.shape == (4, 10) and rows[:, 0].tolist() == index.tolist()
    assert (rows[:, 1:] != index[:, None]).all() and rows.min() >= 0 and rows.max() < 10
    loss.eval()
    student, teacher = {"features": [torch.randn(4, 6)]}, {"features": [torch.randn(4, 5)]}
    before = loss.memory_student.clone()
    first, second = (loss(student, teacher, {"index": index}) for _ in range(2))
    assert torch.equal(first, second) and torch.equal(loss.memory_student, before)


def test_crd_needs_sample_indices_in_range():
    loss = create_loss("crd")
    loss.setup(probe("crd", torch.randn(2, 4), torch.randn(2, 4), num_samples=10))
    student, teacher = {"features": [torch.randn(2, 4)]}, {"features": [torch.randn(2, 4)]}
    with pytest.raises(PotstillError, match="index"):
        loss(student, teacher, {"target": torch.tensor([0, 1])})
    with pytest.raises(PotstillError, match=r"\[0, 10\)"):
        loss(student, teacher, {"index": torch.tensor([3, 10])})
    with pytest.raises(PotstillError, match="at least 2"):
        create_loss("crd").setup(probe("crd", torch.randn(2, 4), torch.randn(2, 4), num_samples=1))


@pytest.mark.parametrize(
    "kwargs", [{"feature_dim": 0}, {"negatives": 0}, {"temperature": 0.0}, {"momentum": 1.0}, {"momentum": -0.1}]
)
def test_crd_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(PotstillError):
        create_loss("crd", **kwargs)


# ---------------------------------------------------------------- lsr


def test_lsr_matches_the_virtual_teacher_kl_by_hand():
    logits, target, a, temperature = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], [1, 0], 0.9, 2.0
    total = 0.0
    for row, label in zip(logits, target):
        virtual = [a if k == label else (1 - a) / 2 for k in range(3)]
        q = [math.exp(v / temperature) for v in virtual]
        q = [x / sum(q) for x in q]
        log_p = [x - math.log(sum(math.exp(y) for y in row)) for x in row]
        total += sum(qk * (math.log(qk) - lp) for qk, lp in zip(q, log_p))
    loss = create_loss("lsr", correct_probability=a, temperature=temperature)
    value = loss({"logits": torch.tensor(logits)}, {"logits": None}, {"target": torch.tensor(target)})
    assert value.item() == pytest.approx(total / 6, rel=1e-6)  # mean over 2 samples x 3 classes


def test_lsr_runs_without_a_teacher_forward():
    task, _ = make_task("lsr")
    task.teacher.register_forward_hook(lambda *args: pytest.fail("the teacher ran"))
    assert torch.isfinite(task.step(make_batch(4), 0.0).terms["lsr"])


@pytest.mark.parametrize("kwargs", [{"correct_probability": 0.0}, {"correct_probability": 1.5}, {"temperature": 0.0}])
def test_lsr_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(PotstillError):
        create_loss("lsr", **kwargs)


@pytest.mark.parametrize("num_samples,negatives", [(50, 5), (50, 49)])  # gathered rows / one product with the memory
def test_crd_scores_are_the_same_formula_for_few_and_many_negatives(num_samples, negatives):
    loss = create_loss("crd", feature_dim=4, negatives=negatives, temperature=0.5)
    loss.setup(probe("crd", torch.randn(3, 6), torch.randn(3, 7), num_samples=num_samples))
    anchor = nn.functional.normalize(torch.randn(3, 4), dim=1)
    rows = loss.candidates(torch.tensor([0, 7, 49]))
    out = loss.scores(loss.memory_student, anchor, rows, 0)
    by_hand = torch.tensor([[math.exp(float(loss.memory_student[j] @ anchor[b]) / 0.5) for j in rows[b]] for b in range(3)])
    assert torch.allclose(out, by_hand / float(loss.normalizers[0]), rtol=1e-5)
