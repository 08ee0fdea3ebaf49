"""A tiny text world made on the spot: a WordPiece tokenizer of 40 words saved as a model folder,
and JSONL files of three topics written with those words. Teachers and students are tiny random
BERTs (hf_config), so an end-to-end text distillation runs in seconds without any shipped model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.conftest import with_changes

TOPICS = {
    "sea": "boat wave fish salt tide shore sail deep",
    "sky": "cloud star moon sun wind rain blue high",
    "land": "tree hill rock field road grass stone farm",
}
COMMON = "the a of and is to in it"
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def save_tokenizer(folder: Path, words: list[str]) -> Path:
    transformers = pytest.importorskip("transformers")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + words) + "\n")
    transformers.BertTokenizerFast(str(folder / "vocab.txt"))  # positional: vocab_file in v4, vocab in v5.save_pretrained(str(folder))
    # a config makes the folder a model folder (tokenizer only: hf_config builds random weights)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": len(SPECIAL) + len(words)}))
    return folder


@pytest.fixture
def tiny_tokenizer(tmp_path) -> Path:
    words = COMMON.split() + [word for topic in TOPICS.values() for word in topic.split()]
    return save_tokenizer(tmp_path / "tokenizer", words)


def write_texts(folder: Path, count: int, seed: int, name: str) -> None:
    rng = random.Random(seed)
    lines = []
    for index in range(count):
        label = list(TOPICS)[index % len(TOPICS)]
        words = [rng.choice(TOPICS[label].split()) for _ in range(rng.randint(2, 6))]
        words += [rng.choice(COMMON.split()) for _ in range(rng.randint(0, 3))]
        rng.shuffle(words)
        lines.append(json.dumps({"text": " ".join(words), "label": label}))
    (folder / name).write_text("\n".join(lines) + "\n")


@pytest.fixture
def topic_files(tmp_path) -> Path:
    folder = tmp_path / "topics"
    folder.mkdir()
    write_texts(folder, 96, 0, "train.jsonl")
    write_texts(folder, 48, 1, "test.jsonl")
    return folder


def text_recipe(tokenizer: Path, data: Path, **changes) -> dict:
    """teacher: 2 layers of width 16; student: 1 layer of width 8 (both 2 heads), 12 tokens."""
    bert = {"tokenizer": str(tokenizer), "heads": 2, "max_positions": 16, "dropout": 0.0}
    recipe = {
        "name": "tiny_text",
        "seed": 0,
        "data": {"name": "text_files", "root": str(data), "args": {"tokenizer": str(tokenizer), "max_length": 12},
                 "batch_size": 16, "eval_batch_size": 64},
        "teacher": {"model": {"name": "hf_config", "args": {**bert, "layers": 2, "hidden": 16, "intermediate": 32}},
                    "train": {"epochs": 10, "lr": 0.003}},
        "student": {"name": "hf_config", "args": {**bert, "layers": 1, "hidden": 8, "intermediate": 16}},
        "train": {"epochs": 2, "lr": 0.005},
        "distill": {"loss": "kd", "teacher_check": "warn"},
        "report": {"latency_repeats": 1, "latency_batch_size": 4},
    }
    return with_changes(recipe, changes)


@pytest.fixture(autouse=True)
def private_token_cache(tmp_path, monkeypatch):
    """Token ids cached under the test's own folder, never the user's ~/.cache."""
    monkeypatch.setenv("POTSTILL_CACHE_DIR", str(tmp_path / "cache"))
