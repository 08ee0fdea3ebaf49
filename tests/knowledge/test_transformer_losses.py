"""DistilBERT, TinyBERT and MiniLM against their papers' equations, worked out in plain Python on
tiny sequences; padding never changes a value; gradients reach the student and the projections."""

import math

import pytest
import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.knowledge import LOSSES, Probe, create_loss

GARBAGE = 1e3  # what padded positions hold: large, so any leak would show


def tensor(values, requires_grad=False):
    return torch.tensor(values, dtype=torch.float32, requires_grad=requires_grad)


def softmax(row):
    exps = [math.exp(x) for x in row]
    return [e / sum(exps) for e in exps]


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def wired(name, student, teacher, adapters=True, **kwargs):
    """A loss set up on these example features, as the wiring's dry run would."""
    loss = create_loss(name, **kwargs)
    names = [f"layer{i}" for i in range(len(student))]
    loss.setup(Probe(name, student, teacher, names, list(names), num_classes=2, num_samples=4, adapters=adapters))
    return loss


def call(loss, student, teacher, mask=None, student_logits=None, teacher_logits=None):
    batch = {} if mask is None else {"attention_mask": torch.tensor(mask)}
    return loss({"logits": student_logits, "features": student}, {"logits": teacher_logits, "features": teacher}, batch)


def padded(x, length, dim=1):
    """Append garbage positions along `dim` up to `length`."""
    shape = list(x.shape)
    shape[dim] = length - shape[dim]
    return torch.cat([x, torch.full(shape, GARBAGE) * torch.randn(shape).sign()], dim=dim)


def padded_attention(a, length):
    """(B, H, L, L) -> (B, H, length, length), garbage in the new rows and columns."""
    return padded(padded(a, length, dim=2), length, dim=3)


# ---------------------------------------------------------------- registry facts and defaults
@pytest.mark.parametrize("name,kind,pairing,modality,defaults", [
    ("distilbert", "feature", "last_layer", "text", {"temperature": 2.0, "soft_weight": 5.0, "cosine_weight": 1.0}),
    ("tinybert_embedding", "feature", "embeddings", "text", {}),
    ("tinybert_hidden", "feature", "layers", "text", {}),
    ("tinybert_attention", "feature", "attentions", "text", {}),
    ("tinybert_prediction", "response", "none", "any", {"temperature": 1.0}),
    ("minilm", "relation", "last_attention_value", "text", {}),
])
def test_registered_with_the_papers_defaults(name, kind, pairing, modality, defaults):
    loss = LOSSES.get(name)
    assert (loss.kind, loss.pairing, loss.modality, loss.default_weight) == (kind, pairing, modality, 1.0)
    assert {key: p.default for key, p in LOSSES.parameters(name).items()} == defaults
    assert LOSSES.describe(name)  # a one-line summary for `potstill list losses`


@pytest.mark.parametrize("name,kwargs", [
    ("distilbert", {"temperature": 0.0}), ("distilbert", {"soft_weight": -1.0}),
    ("distilbert", {"cosine_weight": math.nan}),
    ("tinybert_prediction", {"temperature": -2.0}),
])
def test_bad_hyperparameters_are_rejected(name, kwargs):
    with pytest.raises(PotstillError, match=name):
        create_loss(name, **kwargs)


# ---------------------------------------------------------------- DistilBERT
def test_distilbert_is_weighted_soft_kl_plus_one_minus_cosine():
    s_hidden, t_hidden = tensor([[[1.0, 0.0], [1.0, 1.0]]]), tensor([[[0.0, 1.0], [2.0, 2.0]]])  # cos 0 and 1
    s_logits, t_logits = tensor([[0.0, 0.0]]), tensor([[math.log(3), 0.0]])
    loss = wired("distilbert", [s_hidden], [t_hidden])
    soft = 2.0**2 * kl(softmax([math.log(3) / 2, 0.0]), [0.5, 0.5])  # T^2 KL at T = 2
    expected = 5.0 * soft + 1.0 * ((1 - 0) + (1 - 1)) / 2
    value = call(loss, [s_hidden], [t_hidden], None, s_logits, t_logits)
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_distilbert_ignores_padding_and_sends_gradients_to_the_student_only():
    torch.manual_seed(0)
    s_hidden, t_hidden = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    s_logits, t_logits = torch.randn(1, 2), torch.randn(1, 2)
    loss = wired("distilbert", [s_hidden], [t_hidden])
    plain = call(loss, [s_hidden], [t_hidden], None, s_logits, t_logits)
    s_long = padded(s_hidden, 5).requires_grad_()
    logits = s_logits.clone().requires_grad_()
    teacher_source = padded(t_hidden, 5).requires_grad_()
    value = call(loss, [s_long], [teacher_source.detach()], [[1, 1, 1, 0, 0]], logits, t_logits)
    assert value.item() == pytest.approx(plain.item(), rel=1e-6)
    value.backward()
    assert s_long.grad[:, :3].abs().sum() > 0 and torch.all(s_long.grad[:, 3:] == 0)
    assert logits.grad.abs().sum() > 0 and teacher_source.grad is None
    assert list(loss.parameters()) == []  # DistilBERT keeps the width: no projection


def test_distilbert_needs_equal_widths_and_lengths():
    with pytest.raises(PotstillError, match="tinybert_hidden"):
        wired("distilbert", [torch.randn(1, 3, 4)], [torch.randn(1, 3, 6)])
    loss = wired("distilbert", [torch.randn(1, 3, 4)], [torch.randn(1, 3, 4)])
    with pytest.raises(PotstillError, match="same tokens"):
        call(loss, [torch.randn(1, 3, 4)], [torch.randn(1, 5, 4)], None, torch.zeros(1, 2), torch.zeros(1, 2))


# ---------------------------------------------------------------- TinyBERT: embeddings and hidden states
def test_tinybert_embedding_is_the_mse_over_tokens_and_features():
    s, t = tensor([[[1.0, 2.0], [3.0, 4.0]]]), tensor([[[1.0, 0.0], [0.0, 4.0]]])
    loss = wired("tinybert_embedding", [s], [t])
    assert isinstance(loss.projection, nn.Identity)  # equal widths: no W_e
    assert call(loss, [s], [t]).item() == pytest.approx((0 + 4 + 9 + 0) / 4)


def test_tinybert_embedding_projects_a_narrower_student_with_w_e():
    s, t = tensor([[[1.0], [2.0]]]), tensor([[[2.0, 0.0], [3.0, -1.0]]])
    loss = wired("tinybert_embedding", [s], [t])
    with torch.no_grad():
        loss.projection.weight.copy_(tensor([[2.0], [-1.0]]))
        loss.projection.bias.copy_(tensor([0.0, 1.0]))
    # E_S W_e = [[2, 0], [4, -1]]: squared errors 0, 0, 1, 0
    assert call(loss, [s], [t]).item() == pytest.approx(1 / 4)
    with pytest.raises(PotstillError, match="distill.adapters"):
        wired("tinybert_embedding", [s], [t], adapters=False)


def test_tinybert_hidden_sums_layers_through_one_shared_projection():
    torch.manual_seed(1)
    students, teachers = [torch.randn(2, 3, 4) for _ in range(3)], [torch.randn(2, 3, 6) for _ in range(3)]
    loss = wired("tinybert_hidden", students, teachers)
    assert sum(isinstance(m, nn.Linear) for m in loss.modules()) == 1  # the paper's single W_h
    weight, bias = loss.projection.weight.detach(), loss.projection.bias.detach()
    expected = 0.0
    for s, t in zip(students, teachers):  # by hand: mean over B * L tokens and 6 features
        projected = [[sum(weight[j, k].item() * s[b, i, k].item() for k in range(4)) + bias[j].item() for j in range(6)]
                     for b in range(2) for i in range(3)]
        targets = [[t[b, i, j].item() for j in range(6)] for b in range(2) for i in range(3)]
        errors = [(p - q) ** 2 for p_row, q_row in zip(projected, targets) for p, q in zip(p_row, q_row)]
        expected += sum(errors) / len(errors)
    assert call(loss, students, teachers).item() == pytest.approx(expected, rel=1e-5)


def test_tinybert_hidden_refuses_pairs_of_different_widths():
    with pytest.raises(PotstillError, match="one projection"):
        wired("tinybert_hidden", [torch.randn(1, 2, 4), torch.randn(1, 2, 5)], [torch.randn(1, 2, 6)] * 2)


@pytest.mark.parametrize("name", ["tinybert_embedding", "tinybert_hidden"])
def test_tinybert_regressions_ignore_padding_and_train_the_projection(name):
    torch.manual_seed(2)
    s, t = torch.randn(2, 3, 4), torch.randn(2, 3, 6)
    loss = wired(name, [s], [t])
    mask = [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    plain = (call(loss, [s[:1]], [t[:1]]) * 3 + call(loss, [s[1:, :2]], [t[1:, :2]]) * 2) / 5  # mean over 5 real tokens
    s_long, teacher_source = padded(s, 5).requires_grad_(), padded(t, 5).requires_grad_()
    value = call(loss, [s_long], [teacher_source.detach()], mask)
    assert value.item() == pytest.approx(plain.item(), rel=1e-5)
    value.backward()
    assert s_long.grad.abs().sum() > 0 and s_long.grad[0, 3:].abs().sum() == 0 and teacher_source.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.parameters())


def test_tinybert_regressions_need_the_same_tokens():
    with pytest.raises(PotstillError, match="different lengths"):
        wired("tinybert_embedding", [torch.randn(1, 3, 4)], [torch.randn(1, 4, 4)])
    loss = wired("tinybert_hidden", [torch.randn(1, 3, 4)], [torch.randn(1, 3, 4)])
    with pytest.raises(PotstillError, match="attention_mask"):
        call(loss, [torch.randn(1, 3, 4)], [torch.randn(1, 3, 4)], [[1, 1]])


# ---------------------------------------------------------------- TinyBERT: attention
def test_tinybert_attention_averages_heads_and_sums_layers():
    a_s = tensor([[[[1.0, 0.0], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]]])  # (1, 2 heads, 2, 2)
    a_t = torch.full((1, 2, 2, 2), 0.5)
    loss = wired("tinybert_attention", [a_s, a_s], [a_t, a_t])
    per_layer = ((0.25 + 0.25 + 0 + 0) / 4 + 0.0) / 2  # head 0's MSE, head 1's, times 1/h
    assert call(loss, [a_s, a_s], [a_t, a_t]).item() == pytest.approx(2 * per_layer)


def test_tinybert_attention_counts_only_real_query_and_key_pairs():
    torch.manual_seed(3)
    a_s, a_t = torch.rand(2, 2, 3, 3).softmax(-1), torch.rand(2, 2, 3, 3).softmax(-1)
    loss = wired("tinybert_attention", [a_s], [a_t])
    plain = call(loss, [a_s], [a_t])
    s_long, teacher_source = padded_attention(a_s, 5).requires_grad_(), padded_attention(a_t, 5).requires_grad_()
    value = call(loss, [s_long], [teacher_source.detach()], [[1, 1, 1, 0, 0]] * 2)
    assert value.item() == pytest.approx(plain.item(), rel=1e-6)
    value.backward()
    assert s_long.grad[..., :3, :3].abs().sum() > 0 and s_long.grad[..., 3:].abs().sum() == 0
    assert s_long.grad[..., 3:, :].abs().sum() == 0 and teacher_source.grad is None


def test_tinybert_attention_needs_equal_heads_and_lengths():
    with pytest.raises(PotstillError, match="heads"):
        wired("tinybert_attention", [torch.rand(1, 2, 3, 3)], [torch.rand(1, 4, 3, 3)])
    with pytest.raises(PotstillError, match="different lengths"):
        wired("tinybert_attention", [torch.rand(1, 2, 3, 3)], [torch.rand(1, 2, 4, 4)])


# ---------------------------------------------------------------- TinyBERT: prediction
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_tinybert_prediction_is_soft_cross_entropy_without_t_squared(temperature):
    s, t = [[0.0, 0.0], [1.0, -1.0]], [[math.log(3), 0.0], [0.0, 2.0]]
    by_hand = [-sum(p * math.log(q) for p, q in zip(softmax([x / temperature for x in t_row]),
                                                    softmax([x / temperature for x in s_row])))
               for s_row, t_row in zip(s, t)]
    logits = tensor(s, requires_grad=True)
    value = create_loss("tinybert_prediction", temperature=temperature)({"logits": logits}, {"logits": tensor(t)}, {})
    assert value.item() == pytest.approx(sum(by_hand) / 2, rel=1e-6)
    if temperature == 1.0:
        assert by_hand[0] == pytest.approx(math.log(2))  # softmax(s) = (1/2, 1/2)
    value.backward()
    assert logits.grad.abs().sum() > 0


# ---------------------------------------------------------------- MiniLM
def minilm_example():
    """H = 2 heads, L = 2 tokens; the student's head size is 1, the teacher's 2 (widths 2 and 4)."""
    a_s = torch.full((1, 2, 2, 2), 0.5)
    a_t = tensor([[[[0.75, 0.25], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]]])
    v_s = tensor([[[1.0, 0.0], [0.0, 0.0]]])  # head 0: v = (1, 0); head 1: zeros
    v_t = tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])  # head 0: rows (1, 1), (0, 0); head 1: zeros
    return [a_s, v_s], [a_t, v_t]


def test_minilm_is_attention_kl_plus_value_relation_kl():
    student, teacher = minilm_example()
    loss = wired("minilm", student, teacher)
    assert list(loss.parameters()) == []  # relations only: no projection across widths
    # one differing row in one head of 2, over |x| = 2 queries
    attention = kl([0.75, 0.25], [0.5, 0.5]) / (2 * 2)
    # head 0, query 0: student scores (1*1, 1*0) / sqrt(1); teacher (1+1, 0) / sqrt(2); other rows uniform
    value_relation = kl(softmax([2 / math.sqrt(2), 0.0]), softmax([1.0, 0.0])) / (2 * 2)
    assert call(loss, student, teacher).item() == pytest.approx(attention + value_relation, rel=1e-5)


def test_minilm_ignores_padding_normalises_each_sequence_and_stays_finite():
    student, teacher = minilm_example()
    loss = wired("minilm", student, teacher)
    plain = call(loss, student, teacher).item()
    a_s = padded_attention(student[0], 4)
    a_s[..., :2, 2:] = 0.0  # a real model gives padded keys probability 0: log 0 must not give NaN
    a_s.requires_grad_()
    v_s = padded(student[1], 4).requires_grad_()
    a_t, v_t = padded_attention(teacher[0], 4), padded(teacher[1], 4)
    a_t[..., :2, 2:] = 0.0
    teacher_source = v_t.clone().requires_grad_()
    value = call(loss, [a_s, v_s], [a_t, teacher_source.detach()], [[1, 1, 0, 0]])
    assert value.item() == pytest.approx(plain, rel=1e-5)
    value.backward()
    for grad in (a_s.grad, v_s.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert v_s.grad[:, 2:].abs().sum() == 0 and teacher_source.grad is None
    # two sequences, one padded: the mean of each sequence's own value (1 / (H |x|) per sequence)
    one = torch.ones(1, 2, 1, 1)  # a single token: every distribution is (1), KL 0
    lone, lone_t = [one, tensor([[[3.0, 1.0]]])], [one, tensor([[[2.0, 0.0, 1.0, 1.0]]])]
    assert call(loss, lone, lone_t).item() == pytest.approx(0.0, abs=1e-7)
    both = [torch.cat([a_s.detach(), padded_attention(one, 4)]), torch.cat([v_s.detach(), padded(lone[1], 4)])]
    both_t = [torch.cat([a_t, padded_attention(one, 4)]), torch.cat([v_t, padded(lone_t[1], 4)])]
    assert call(loss, both, both_t, [[1, 1, 0, 0], [1, 0, 0, 0]]).item() == pytest.approx(plain / 2, rel=1e-5)


def test_minilm_needs_equal_heads_same_tokens_and_splittable_values():
    student, teacher = minilm_example()
    with pytest.raises(PotstillError, match="heads"):
        wired("minilm", [torch.full((1, 1, 2, 2), 0.5), student[1]], teacher)
    with pytest.raises(PotstillError, match="different lengths"):
        wired("minilm", student, [torch.full((1, 2, 3, 3), 1 / 3), torch.zeros(1, 3, 4)])
    with pytest.raises(PotstillError, match="split"):
        wired("minilm", student, [teacher[0], torch.zeros(1, 2, 5)])
    with pytest.raises(PotstillError, match="two layer pairs"):
        wired("minilm", student[:1], teacher[:1])
