"""The top-k cache for language models: log-probabilities of the k most likely tokens, no fill value;
token losses compare the k tokens and one bucket for the rest (knowledge/token/common.bucketed).

Worked example, one position over V = 5 tokens, k = 2: teacher probabilities (0.5, 0.25, 0.15, 0.06, 0.04).
Stored: log 0.5 and log 0.25 with ids 0 and 1. Decoded: the tail's mass 1 - 0.75 = 0.25 spread evenly
over the other 3 tokens, 0.25 / 3 each.
"""

import math

import pytest
import torch

from potstill.cache import codec
from potstill.knowledge import create_loss
from potstill.positions import IGNORE_INDEX

PROBS = torch.tensor([0.5, 0.25, 0.15, 0.06, 0.04])


def token_logits() -> torch.Tensor:
    return PROBS.log().view(1, 1, 5) + 3.0  # (B=1, L=1, V=5); a constant shift changes no probability


def test_per_token_top_k_stores_log_probabilities_and_ids_only():
    fields = codec.encode(token_logits(), 2, torch.float32, per_token=True)
    assert set(fields) == {"log_probs", "indices"}  # no fill: the tail is what the k leave
    assert fields["indices"].tolist() == [[[0, 1]]] and fields["indices"].dtype == torch.uint8
    assert torch.allclose(fields["log_probs"], torch.tensor([[[math.log(0.5), math.log(0.25)]]]))


def test_decoding_keeps_the_tail_mass_and_spreads_it_evenly():
    decoded = codec.decode(codec.encode(token_logits(), 2, torch.float32, per_token=True), 5).softmax(dim=-1)
    assert torch.allclose(decoded, torch.tensor([[[0.5, 0.25, 0.25 / 3, 0.25 / 3, 0.25 / 3]]]), atol=1e-6)


def test_sixteen_of_2048_tokens_take_64_bytes_per_token():
    logits = torch.randn(2, 3, 2048)
    fields = codec.encode(logits, 16, torch.float16, per_token=True)
    per_token = sum(value[0, 0].numel() * value.element_size() for value in fields.values())
    assert per_token == 64  # 16 fp16 log-probabilities + 16 int16 ids


def test_a_tail_that_rounding_empties_keeps_the_floor():
    fields = {"log_probs": torch.tensor([[[0.0, -30.0]]]), "indices": torch.tensor([[[0, 1]]])}  # p sums to 1
    decoded = codec.decode(fields, 4).softmax(dim=-1)
    assert torch.isfinite(decoded).all() and float(decoded[0, 0, 2:].sum()) == pytest.approx(codec.TAIL_FLOOR, rel=1e-3)


def sparse_teacher() -> dict:
    fields = codec.encode(token_logits(), 2, torch.float32, per_token=True)
    return {"logits": codec.decode(fields, 5), "top_k": (fields["log_probs"], fields["indices"].long())}


STUDENT = [0.3, 0.3, 0.2, 0.1, 0.1]


def test_token_losses_compare_the_top_k_and_one_tail_bucket():
    """Teacher buckets (0.5, 0.25, tail 0.25); student (0.3, 0.3, tail 0.2 + 0.1 + 0.1 = 0.4).
    forward KL = 0.5 ln(0.5/0.3) + 0.25 ln(0.25/0.3) + 0.25 ln(0.25/0.4) = 0.0947...; the split inside
    the tail is not assumed (a flattened tail would give 0.1386 here)."""
    student = {"logits": torch.tensor(STUDENT).log().view(1, 1, 5)}
    batch = {"target": torch.zeros(1, 1, dtype=torch.long)}
    by_hand = 0.5 * math.log(0.5 / 0.3) + 0.25 * math.log(0.25 / 0.3) + 0.25 * math.log(0.25 / 0.4)
    assert float(create_loss("forward_kl", temperature=1.0)(student, sparse_teacher(), batch)) == pytest.approx(by_hand, abs=1e-6)
    reverse = 0.3 * math.log(0.3 / 0.5) + 0.3 * math.log(0.3 / 0.25) + 0.4 * math.log(0.4 / 0.25)
    assert float(create_loss("reverse_kl", temperature=1.0)(student, sparse_teacher(), batch)) == pytest.approx(reverse, abs=1e-6)
    tvd = 0.5 * (0.2 + 0.05 + 0.15)
    assert float(create_loss("tvd", temperature=1.0)(student, sparse_teacher(), batch)) == pytest.approx(tvd, abs=1e-6)


def test_the_bucket_counts_only_counted_positions_and_reaches_only_the_student():
    student = torch.tensor([STUDENT, STUDENT]).log().view(1, 2, 5).requires_grad_()
    fields = codec.encode(token_logits().expand(1, 2, 5), 2, torch.float32, per_token=True)
    teacher = {"logits": codec.decode(fields, 5).requires_grad_(), "top_k": (fields["log_probs"], fields["indices"].long())}
    batch = {"target": torch.tensor([[0, IGNORE_INDEX]])}
    loss = create_loss("forward_kl", temperature=1.0)({"logits": student}, teacher, batch)
    loss.backward()
    assert student.grad[0, 0].abs().sum() > 0 and student.grad[0, 1].abs().sum() == 0 and teacher["logits"].grad is None


@pytest.mark.parametrize("name", ["reverse_kl", "jsd", "skew_reverse_kl", "tvd"])
def test_mode_seeking_losses_stay_finite_where_the_student_bets_outside_the_teachers_top_k(name):
    student = torch.tensor([0.01, 0.01, 0.01, 0.01, 0.96]).log().view(1, 1, 5)  # all on a token outside the top 2
    value = create_loss(name, temperature=1.0)({"logits": student}, sparse_teacher(), {"target": torch.zeros(1, 1, dtype=torch.long)})
    assert math.isfinite(float(value)) and float(value) > 0
