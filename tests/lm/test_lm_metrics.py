"""What a language model is measured by (engine/tasks.py CausalLM, engine/task.py hard_label_loss,
teacher_check.py, report/), against numbers worked out by hand on 2 rows of 3 positions over a
3-token vocabulary, two of whose positions do not count (IGNORE_INDEX).

The model returns fixed logits, the logs of chosen probabilities (softmax gives them back):

    row 0  pos 0  p = (.55, .30, .15)  target 1   NLL -ln .30   argmax 0 wrong   confidence .55
           pos 1  p = (.15, .10, .75)  target 2   NLL -ln .75   argmax 2 right   confidence .75
           pos 2  (ignored; the logits say token 0 with confidence ~1)
    row 1  pos 0  (ignored; likewise)
           pos 1  p = (.30, .55, .15)  target 0   NLL -ln .30   argmax 1 wrong   confidence .55
           pos 2  p = (.05, .85, .10)  target 1   NLL -ln .85   argmax 1 right   confidence .85

    perplexity = exp(mean NLL) = (.30 * .75 * .30 * .85) ** (-1/4) = 0.057375 ** -0.25 = 2.04324
    next-token top-1 = 2/4;  ECE (10 bins) = 2/4 |0 - .55| + 1/4 |1 - .75| + 1/4 |1 - .85| = 0.375
    bits per byte with 3 + 5 target bytes = sum NLL / ln 2 / 8
"""

from __future__ import annotations

import math

import pytest
import torch
from rich.console import Console
from torch import nn

from potstill.data.lm import LMData
from potstill.data.loader import BatchLoader
from potstill.engine.task import hard_label_loss
from potstill.engine.tasks import TASKS, CausalLM, perplexity
from potstill.positions import IGNORE_INDEX
from potstill.report import render_table, summarize
from potstill.report.table import headline_lines, result_lines
from potstill.teacher_check import PPL_MARGIN, check_lm_teacher, lm_teacher_problems, unigram_perplexity

X = IGNORE_INDEX
SURE = [0.98, 0.01, 0.01]  # at the ignored positions: confident, and counted it would move every number
PROBS = [[[0.55, 0.30, 0.15], [0.15, 0.10, 0.75], SURE],
         [SURE, [0.30, 0.55, 0.15], [0.05, 0.85, 0.10]]]
TARGETS = [[1, 2, X], [X, 0, 1]]
COUNTED_P = [0.30, 0.75, 0.30, 0.85]  # the probability each counted target gets
NLL = [-math.log(p) for p in COUNTED_P]
PPL = (0.30 * 0.75 * 0.30 * 0.85) ** -0.25
ECE = 2 / 4 * 0.55 + 1 / 4 * 0.25 + 1 / 4 * 0.15
BYTES = [3, 5]


class FixedLogits(nn.Module):
    """Row r's logits: table[r]; each row's first token id is its row number."""

    def __init__(self, probabilities):
        super().__init__()
        self.table = nn.Parameter(torch.tensor(probabilities).log())  # (N, L, V)

    def forward(self, inputs):
        ids = inputs["input_ids"]  # (B, L)
        return self.table[ids[:, 0]][:, : ids.shape[1]]


def lm_data(target_bytes=True) -> LMData:
    ids = torch.tensor([[0, 1, 2], [1, 0, 0]])
    return LMData(ids, torch.ones_like(ids), torch.tensor(TARGETS), 3,
                  target_bytes=torch.tensor(BYTES) if target_bytes else None)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_held_out_perplexity_and_top1_count_the_counted_tokens_only(batch_size):
    """Catches: ignored positions averaged in (ppl would fall towards 1, top-1 rise to 4/6), a mean of
    per-batch perplexities instead of one over all tokens (1 row per batch: (2.108 + 1.980) / 2 = 2.0443)."""
    loader = BatchLoader(lm_data(), batch_size)
    measured = CausalLM().held_out(FixedLogits(PROBS), loader, "test")
    assert measured == {"test_ppl": pytest.approx(PPL, rel=1e-5), "test_acc": pytest.approx(0.5)}
    assert PPL == pytest.approx(2.04324, abs=1e-5)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_report_gives_perplexity_bits_per_byte_top1_agreement_and_ece(batch_size):
    task = CausalLM()
    loader = BatchLoader(lm_data(), batch_size)
    student = task.predict(FixedLogits(PROBS), loader)
    assert student["nll"].tolist() == pytest.approx(NLL, rel=1e-5)
    assert student["argmax"].tolist() == [0, 2, 1, 1]
    assert student["confidence"].tolist() == pytest.approx([0.55, 0.75, 0.55, 0.85], rel=1e-5)
    assert student["correct"].tolist() == [False, True, False, True]
    assert int(student["bytes"]) == 8
    # the teacher's argmax: 0, 0, 1, 2 at the counted positions -> agrees with the student at 2 of 4
    teacher_probs = [[[0.5, 0.3, 0.2], [0.4, 0.3, 0.3], [0.1, 0.1, 0.8]], [[0.1, 0.1, 0.8], [0.2, 0.7, 0.1], [0.2, 0.2, 0.6]]]
    teacher = task.predict(FixedLogits(teacher_probs), loader)
    assert teacher["argmax"].tolist() == [0, 0, 1, 2]
    row = task.report(student, teacher, bins=10)
    assert row["test_ppl"] == pytest.approx(PPL, rel=1e-5)
    assert row["test_bpb"] == pytest.approx(sum(NLL) / math.log(2) / 8, rel=1e-5)
    assert row["test_acc"] == pytest.approx(0.5)
    assert row["teacher_agreement"] == pytest.approx(0.5)
    assert row["ece"] == pytest.approx(ECE, abs=1e-6) and ECE == pytest.approx(0.375)
    assert row["test_tokens"] == 4


def test_report_without_byte_counts_or_teacher_leaves_those_fields_empty():
    task = CausalLM()
    prediction = task.predict(FixedLogits(PROBS), BatchLoader(lm_data(target_bytes=False), 2))
    assert "bytes" not in prediction
    row = task.report(prediction, None, bins=10)
    assert row["test_bpb"] is None and row["teacher_agreement"] is None
    assert row["test_ppl"] == pytest.approx(PPL, rel=1e-5)


def test_predict_restores_training_mode():
    model = FixedLogits(PROBS).train()
    CausalLM().predict(model, BatchLoader(lm_data(), 2))
    assert model.training


def test_step_counts_count_hits_and_positions_that_count_only():
    """Catches: the positions with target -100 counted in the denominator (6 instead of 4)."""
    logits = torch.tensor(PROBS).log()
    hits, counted = CausalLM().step_counts(logits, {"target": torch.tensor(TARGETS)})
    assert int(hits) == 2 and counted == 4
    hits, counted = TASKS["causal_lm"].step_counts(logits, {"target": torch.tensor([[X, X, X], [X, 0, 1]])})
    assert int(hits) == 1 and counted == 2


def test_hard_label_loss_is_the_mean_cross_entropy_over_counted_positions():
    logits = torch.tensor(PROBS).log().requires_grad_()
    loss = hard_label_loss(logits, torch.tensor(TARGETS), label_smoothing=0.0)
    assert loss.item() == pytest.approx(sum(NLL) / 4, rel=1e-5)
    loss.backward()
    assert logits.grad[0, 2].abs().sum() == 0 and logits.grad[1, 0].abs().sum() == 0  # ignored: no gradient
    assert logits.grad[0, 0].abs().sum() > 0
    assert math.log(PPL) == pytest.approx(sum(NLL) / 4)  # the loss is ln(perplexity)


def test_perplexity_is_exp_of_the_mean_nll_in_double_precision():
    assert perplexity(torch.tensor([math.log(2.0), math.log(8.0)])) == pytest.approx(4.0)
    assert perplexity(torch.full((1_000_000,), 3.0)) == pytest.approx(math.exp(3.0), rel=1e-12)


def test_unigram_perplexity_by_hand():
    """Training tokens 0, 0, 1 (one ignored) over 3 tokens, add-one: counts 3, 2, 1 -> q = 1/2, 1/3, 1/6.
    Test tokens 0 and 2: perplexity = (1/2 * 1/6) ** -1/2 = sqrt(12)."""
    train = torch.tensor([[0, 0], [1, X]])
    test = torch.tensor([[0, X, 2]])
    assert unigram_perplexity(train, test, 3) == pytest.approx(math.sqrt(12))


def test_lm_teacher_problems_compare_with_frequencies_then_the_student_alone():
    assert lm_teacher_problems(30.0, 30.0, None) == [
        "has a test perplexity of 30.00, no better than token frequencies alone (30.00)"]
    assert lm_teacher_problems(10.0, 30.0, None) == []
    assert PPL_MARGIN == 0.02
    assert lm_teacher_problems(10.3, 30.0, 10.0) == [
        "has a test perplexity of 10.30, above the student trained alone (10.00)"]
    assert lm_teacher_problems(10.15, 30.0, 10.0) == []  # within 2%
    assert lm_teacher_problems(9.0, 30.0, 10.0) == []


@pytest.mark.parametrize("mode", ["refuse", "warn", "off"])
def test_check_lm_teacher_modes(mode):
    from potstill.errors import PotstillError

    said = []
    evaluate = lambda model: {"test_ppl": 40.0}
    if mode == "refuse":
        with pytest.raises(PotstillError, match="no better than token frequencies alone .30.00.*teacher_check: warn"):
            check_lm_teacher(None, evaluate, 30.0, None, mode, said.append)
        return
    result = check_lm_teacher(None, evaluate, 30.0, None, mode, said.append)
    assert result == (40.0 if mode == "warn" else None)
    assert (said[0].startswith("WARNING: the teacher has a test perplexity of 40.00") if mode == "warn" else said == [])


def lm_row(role, ppl, acc, params=100):
    return {"role": role, "title": {"baseline": "student alone", "student": "distilled"}.get(role, role),
            "test_ppl": ppl, "test_bpb": 1.5, "test_acc": acc, "teacher_agreement": None, "ece": 0.1,
            "params": params, "size_bytes": 1000, "train_time_s": 1.0}


def test_summary_gives_the_perplexity_change_against_the_student_alone():
    rows = [lm_row("teacher", 20.0, 0.3, 400), lm_row("baseline", 50.0, 0.1), lm_row("student", 40.0, 0.125)]
    summary = summarize(rows, {"dataset": "shakespeare"})
    assert summary["perplexity_change_pct"] == pytest.approx(-20.0)
    assert summary["distillation_gain_points"] == pytest.approx(2.5)
    assert summary["compression"] == 4.0
    assert "perplexity" in summary["accuracy_note"]
    assert result_lines(summary)[0] == ("distillation helped: test perplexity -20.00% against the student trained alone "
                                        "(next-token top-1 +2.50 points)")
    assert headline_lines(summary)[0] == "perplexity on the test split: teacher 20.00, student alone 50.00, distilled 40.00"
    worse = summarize([lm_row("baseline", 50.0, 0.1), lm_row("student", 55.0, 0.1)], {})
    assert worse["perplexity_change_pct"] == pytest.approx(10.0)
    assert result_lines(worse)[0].startswith("distillation did not help: test perplexity +10.00%")


def test_the_table_leads_with_perplexity_and_bits_per_byte():
    rows = [lm_row("teacher", 21.528, 0.3, 400), lm_row("baseline", 48.9209, 0.1), lm_row("student", 40.0, 0.125)]
    console = Console(width=200, record=True)
    render_table(summarize(rows, {"dataset": "shakespeare"}), console)
    text = console.export_text()
    header = next(line for line in text.splitlines() if line.lstrip().startswith("model"))
    assert header.split()[:4] == ["model", "ppl", "bpb", "top-1"]
    assert "21.53" in text and "48.92" in text and "1.5000" in text
    assert "ppl: perplexity; bpb: bits per UTF-8 byte" in text
    assert "test perplexity -18.23% against the student trained alone" in text
