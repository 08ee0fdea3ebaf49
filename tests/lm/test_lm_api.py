"""Language models from Python (potstill.train / potstill.distill with potstill.LMData): prompt/
response rows built with prompt_rows, where only the response is learned. The task: after a prompt
of 2-4 random tokens, count up from its last token (mod 19), which a one-layer GPT learns in seconds."""

from __future__ import annotations

import random

import pytest

import potstill
from potstill.data.lm import LMData, prompt_rows
from potstill.errors import PotstillError
from potstill.models import create_model

VOCABULARY, LENGTH, EOS = 20, 12, 0


def rows(count: int, seed: int) -> LMData:
    rng = random.Random(seed)
    prompts = [[rng.randrange(1, VOCABULARY) for _ in range(rng.randint(2, 4))] for _ in range(count)]
    responses = [[(prompt[-1] + step) % 19 + 1 for step in range(rng.randint(3, 5))] for prompt in prompts]
    ids, mask, targets = prompt_rows(prompts, responses, LENGTH, pad_id=EOS, eos_id=EOS)
    return LMData(ids, mask, targets, VOCABULARY)


def gpt(hidden: int, seed: int):
    return create_model("hf_lm_config", input_shape=(LENGTH,), num_classes=VOCABULARY, seed=seed, layers=1,
                        hidden=hidden, heads=2)


@pytest.fixture(scope="module")
def teacher():
    model, summary = potstill.train(gpt(32, 0), rows(200, 0), rows(50, 1), epochs=6, lr=0.01, quiet=True)
    return model, summary


def test_train_measures_perplexity_on_the_responses(teacher):
    _, summary = teacher
    row = summary["models"][0]
    assert row["test_ppl"] < 10  # counting up is learnable; uniform would be 20
    assert row["test_bpb"] is None  # no byte counts given with the data
    responses = int((rows(50, 1).targets != -100).sum())
    assert row["test_tokens"] == responses


def test_distill_with_a_token_loss_reports_the_perplexity_change(teacher):
    model, _ = teacher
    result = potstill.distill(model, gpt(16, 1), rows(200, 0), rows(50, 1), epochs=2, loss="forward_kl", quiet=True)
    by_role = {row["role"]: row for row in result.summary["models"]}
    assert list(by_role) == ["teacher", "baseline", "student"]
    change = 100 * (by_role["student"]["test_ppl"] / by_role["baseline"]["test_ppl"] - 1)
    assert result.summary["perplexity_change_pct"] == pytest.approx(change, abs=1e-3)


def test_train_and_test_data_must_share_a_vocabulary(teacher):
    model, _ = teacher
    other = rows(50, 1)
    other = LMData(other.input_ids, other.attention_mask, other.targets, VOCABULARY + 1)
    with pytest.raises(PotstillError, match="vocabulary of 20 tokens but test_data 21"):
        potstill.distill(model, gpt(16, 1), rows(200, 0), other, epochs=1, loss="forward_kl", quiet=True)


def test_gkd_accepts_language_model_data_given_from_python(teacher):
    model, _ = teacher
    result = potstill.distill(model, gpt(16, 1), rows(200, 0), rows(50, 1), epochs=1, loss="forward_kl", quiet=True,
                              baseline=False, scheme={"name": "gkd", "args": {"lmbda": 0.0, "max_new_tokens": 6}})
    assert result.summary["models"][-1]["test_ppl"] > 1
