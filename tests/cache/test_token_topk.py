"""The top-k cache for language models: log-probabilities of the k most likely tokens, no fill value.

Worked example, one position over V = 5 tokens, k = 2: teacher probabilities (0.5, 0.25, 0.15, 0.06, 0.04).
Stored: log 0.5 and log 0.25 with ids 0 and 1. Decoded: the tail's mass 1 - 0.75 = 0.25 spread evenly
over the other 3 tokens, 0.25 / 3 each.
"""

import math

import pytest
import torch

from potstill.cache import codec
from potstill.knowledge import create_loss

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


def test_forward_kl_from_the_cache_differs_from_full_logits_only_by_the_tail_split():
    """KL(p_t || p_s) with the tail flattened: the top-k terms are exact; the tail contributes
    T log(T / 3) - sum_tail T/3 log p_s instead of sum_tail p_t log(p_t / p_s) (T = tail mass)."""
    student = torch.tensor([0.3, 0.3, 0.2, 0.1, 0.1]).log().view(1, 1, 5)
    target = torch.zeros(1, 1, dtype=torch.long)
    loss = create_loss("forward_kl", temperature=1.0)
    cached = codec.decode(codec.encode(token_logits(), 2, torch.float32, per_token=True), 5)
    full = float(loss({"logits": student}, {"logits": token_logits()}, {"target": target}))
    from_cache = float(loss({"logits": student}, {"logits": cached}, {"target": target}))
    s = [0.3, 0.3, 0.2, 0.1, 0.1]
    by_hand_full = sum(p * math.log(p / q) for p, q in zip(PROBS.tolist(), s))
    by_hand_cache = 0.5 * math.log(0.5 / 0.3) + 0.25 * math.log(0.25 / 0.3) + sum((0.25 / 3) * math.log((0.25 / 3) / q) for q in s[2:])
    assert full == pytest.approx(by_hand_full, abs=1e-5) and from_cache == pytest.approx(by_hand_cache, abs=1e-5)


@pytest.mark.parametrize("name", ["reverse_kl", "jsd", "skew_reverse_kl", "tvd"])
def test_mode_seeking_losses_stay_finite_where_the_student_bets_outside_the_teachers_top_k(name):
    student = torch.tensor([0.01, 0.01, 0.01, 0.01, 0.96]).log().view(1, 1, 5)  # all on a token outside the top 2
    cached = codec.decode(codec.encode(token_logits(), 2, torch.float32, per_token=True), 5)
    value = create_loss(name, temperature=1.0)({"logits": student}, {"logits": cached}, {"target": torch.zeros(1, 1, dtype=torch.long)})
    assert math.isfinite(float(value)) and float(value) > 0
