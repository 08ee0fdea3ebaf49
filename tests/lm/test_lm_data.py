"""Language-model data (data/lm.py) on streams and rows small enough to write out by hand:
windows, prompt/response rows, LMData's checks, row subsets and batch fields, transformers'
label convention, and the random train/test split of rows."""

from __future__ import annotations

import pytest
import torch

from potstill.data import split_rows
from potstill.data.lm import LMData, prompt_rows, windows
from potstill.errors import PotstillError
from potstill.positions import IGNORE_INDEX

X = IGNORE_INDEX


def test_windows_cut_a_stream_into_inputs_and_next_tokens():
    """Catches: overlapping windows, targets not shifted by one, a window that runs past the stream."""
    stream = torch.arange(10, 21)  # 11 tokens: (11 - 1) // 3 = 3 windows, tokens 10..19 read, 11..20 predicted
    inputs, targets = windows(stream, 3)
    assert inputs.tolist() == [[10, 11, 12], [13, 14, 15], [16, 17, 18]]
    assert targets.tolist() == [[11, 12, 13], [14, 15, 16], [17, 18, 19]]
    assert inputs.shape == targets.shape == (3, 3)


def test_windows_drop_the_tail_that_fills_no_window():
    stream = torch.arange(12)  # (12 - 1) // 4 = 2 windows; tokens 9, 10, 11 are the unused tail
    inputs, targets = windows(stream, 4)
    assert inputs.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert targets.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert windows(torch.arange(9), 4)[0].shape == (2, 4)  # exactly 2 * 4 + 1 tokens: no tail, both windows


def test_windows_are_copies_not_views_of_the_stream():
    stream = torch.arange(9)
    inputs, targets = windows(stream, 4)
    inputs[0, 0] = 99
    targets[0, 0] = 99
    assert stream.tolist() == list(range(9))


@pytest.mark.parametrize("length, context", [(4, 4), (1, 2), (0, 2)])
def test_a_stream_too_short_for_one_window_is_refused(length, context):
    """4 tokens give 3 (input, next) pairs: not one window of 4."""
    with pytest.raises(PotstillError, match=f"a text of {length} tokens fills no window of {context + 1} tokens"):
        windows(torch.arange(length), context)


def test_prompt_rows_learn_the_response_and_its_eos_only():
    """Row 0: prompt 1 2 3, response 5 6, EOS 10 -> tokens 1 2 3 5 6 10 in 7 columns. Position t
    predicts token t + 1, so positions 2, 3, 4 predict 5, 6, 10 (position 2 reads the whole prompt).
    Row 1: prompt 4, response 7 8 9 -> positions 0..3 predict 7 8 9 10."""
    ids, mask, targets = prompt_rows([[1, 2, 3], [4]], [[5, 6], [7, 8, 9]], length=7, pad_id=0, eos_id=10)
    assert ids.tolist() == [[1, 2, 3, 5, 6, 10, 0], [4, 7, 8, 9, 10, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0, 0]]
    assert targets.tolist() == [[X, X, 5, 6, 10, X, X], [7, 8, 9, 10, X, X, X]]


def test_prompt_rows_without_eos_end_at_the_response():
    ids, mask, targets = prompt_rows([[1, 2, 3]], [[5, 6]], length=6, pad_id=9, eos_id=None)
    assert ids.tolist() == [[1, 2, 3, 5, 6, 9]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 0]]
    assert targets.tolist() == [[X, X, 5, 6, X, X]]
    data = LMData(ids, mask, targets, 10)  # what prompt_rows makes is valid LM data
    assert data.counted_tokens() == 2


def lm(targets, vocabulary=10, ids=None, mask=None, **kwargs):
    targets = torch.tensor(targets)
    ids = torch.zeros_like(targets) if ids is None else torch.tensor(ids)
    mask = torch.ones_like(targets) if mask is None else torch.tensor(mask)
    return LMData(ids, mask, targets, vocabulary, **kwargs)


@pytest.mark.parametrize("make, fragments", [
    (lambda: LMData(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long),
                    torch.zeros(2, 4, dtype=torch.long), 10, split="train"),
     ["the train targets must have the token ids' shape (2, 3)", "(2, 4)"]),
    (lambda: LMData(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 2, dtype=torch.long),
                    torch.zeros(2, 3, dtype=torch.long), 10), ["shape (N, L)", "(2, 3) and (2, 2)"]),
    (lambda: LMData(torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long),
                    torch.zeros(6, dtype=torch.long), 10), ["shape (N, L)", "(6,)"]),
    (lambda: lm([[1, 2]], ids=[[3, 10]]), ["token ids hold values outside 0..9", "10 tokens"]),
    (lambda: lm([[1, 2]], ids=[[-1, 0]]), ["token ids hold values outside 0..9"]),
    (lambda: lm([[1, 10]]), ["targets hold values outside 0..9"]),
    (lambda: lm([[1, -5]]), ["targets hold values outside 0..9"]),
    (lambda: lm([[1, X], [X, X], [2, 3]], split="test"), ["the test row 1 has no position to learn", "-100", "drop it"]),
])
def test_lm_data_refuses_what_cannot_be_learned(make, fragments):
    with pytest.raises(PotstillError) as error:
        make()
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)


def test_ignored_targets_are_not_checked_against_the_vocabulary():
    data = lm([[X, 9], [4, X]])
    assert data.counted_tokens() == 2 and len(data) == 2 and data.input_shape == (2,)


def test_subset_keeps_rows_and_their_byte_counts_together():
    data = lm([[1, 2], [3, X], [X, 4]], ids=[[0, 1], [2, 3], [4, 5]], target_bytes=torch.tensor([5, 6, 7]), split="train")
    part = data.subset(torch.tensor([2, 0]))
    assert part.input_ids.tolist() == [[4, 5], [0, 1]]
    assert part.targets.tolist() == [[X, 4], [1, 2]]
    assert part.target_bytes.tolist() == [7, 5]
    assert part.split == "train" and part.num_classes == 10 and part.counted_tokens() == 3


def test_fields_cut_rows_after_the_longest_used_column_with_their_targets():
    """Right-padded rows using 2, 3 and 1 columns of 5: a batch of rows 0 and 2 needs 2 columns,
    rows 0 and 1 need 3; the targets are cut with the ids (same (B, L'))."""
    ids = [[1, 2, 0, 0, 0], [3, 4, 5, 0, 0], [6, 0, 0, 0, 0]]
    mask = [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]
    targets = [[2, X, X, X, X], [4, 5, X, X, X], [7, X, X, X, X]]
    data = lm(targets, ids=ids, mask=mask)
    fields = data.fields(torch.tensor([0, 2]))
    assert fields["input_ids"].tolist() == [[1, 2], [6, 0]]
    assert fields["attention_mask"].tolist() == [[1, 1], [1, 0]]
    assert fields["target"].tolist() == [[2, X], [7, X]]
    fields = data.fields(torch.tensor([1, 0]))
    assert fields["input_ids"].tolist() == [[3, 4, 5], [1, 2, 0]]
    assert fields["target"].tolist() == [[4, 5, X], [2, X, X]]
    assert set(fields) == {"input_ids", "attention_mask", "target"}


def test_fields_of_left_padded_rows_keep_every_column_up_to_the_last_used():
    data = lm([[X, 5, X], [X, X, 6]], ids=[[0, 4, 0], [0, 0, 5]], mask=[[0, 1, 0], [0, 0, 1]])
    assert data.fields(torch.tensor([0]))["input_ids"].tolist() == [[0, 4]]
    assert data.fields(torch.tensor([0, 1]))["input_ids"].shape == (2, 3)


def test_from_labels_shifts_transformers_labels_once():
    """transformers: labels == input_ids where learned, shifted inside the model. Here targets[:, t] = labels[:, t + 1]
    and the last position predicts nothing."""
    ids = [[5, 6, 7, 8], [1, 2, 3, 0]]
    labels = [[X, X, 7, 8], [1, 2, 3, X]]
    data = LMData.from_labels(torch.tensor(ids), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]), torch.tensor(labels), 10)
    assert data.targets.tolist() == [[X, 7, 8, X], [2, 3, X, X]]
    assert data.input_ids.tolist() == ids
    with pytest.raises(PotstillError, match=r"labels must have shape \(N, L\)"):
        LMData.from_labels(torch.tensor(ids), torch.ones(2, 4, dtype=torch.long), torch.tensor([1, 2]), 10)


def test_split_rows_holds_out_random_disjoint_rows():
    """Catches: the classification split (stratified by a (N,) target) applied to (N, L) targets,
    the first rows held out instead of random ones, or a row on both sides."""
    rows = 40
    data = lm([[i % 10, (i + 1) % 10] for i in range(rows)], ids=[[i % 10, 0] for i in range(rows)])
    keep, held = split_rows(data, 0.25, seed=3)
    assert len(held) == 10 and len(keep) == 30
    assert sorted(keep.tolist() + held.tolist()) == list(range(rows))  # disjoint, every row once
    assert keep.tolist() == sorted(keep.tolist()) and held.tolist() == sorted(held.tolist())
    assert held.tolist() != list(range(10)) and held.tolist() != list(range(30, 40))  # random, not a block
    again = split_rows(data, 0.25, seed=3)
    assert torch.equal(again[0], keep) and torch.equal(again[1], held)  # seeded
    assert not torch.equal(split_rows(data, 0.25, seed=4)[1], held)
    assert len(split_rows(data, 0.1, seed=3)[1]) == 4  # round(40 * 0.1)


@pytest.mark.parametrize("prompts, responses", [([[1, 2, 3]], [[5, 6, 7]]), ([[]], [[5, 6]])])
def test_prompt_rows_refuse_rows_that_do_not_fit_in_words(prompts, responses):
    with pytest.raises(PotstillError, match="row 0"):
        prompt_rows(prompts, responses, length=5, pad_id=0, eos_id=9)
