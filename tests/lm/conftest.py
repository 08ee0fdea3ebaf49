"""A tiny Shakespeare made on the spot: four fake plays of a few KB each (their own speakers, one
shared grammar, so a one-layer GPT learns it in seconds), plus a Folio-spelling copy and a poem
whose words appear nowhere else, so a reader that reads them is caught by a word. Teachers and
students are one-layer GPT-2s of width 32 and 16 over a 300-token byte-level BPE, context 16.

Every test's POTSTILL_CACHE_DIR is one folder of this session (tokenizers are keyed by content,
so sharing them is safe), never the user's ~/.cache.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest

from potstill.cli.main import main
from tests.conftest import with_changes, write_recipe

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

SPEAKERS = {  # each play's own names: a decoded split shows which plays went into it
    "as_you_like_it": ["ROSALIND", "ORLANDO", "CELIA"],
    "king_lear": ["GONERIL", "EDGAR", "CORDELIA"],
    "macbeth": ["BANQUO", "DUNCAN", "MALCOLM"],
    "othello": ["IAGO", "DESDEMONA", "CASSIO"],
}
SUBJECTS = ["the king", "my lord", "the queen", "good sir", "the fool", "sweet lady", "the ghost", "this night"]
VERBS = ["doth speak", "shall come", "will go", "hath seen", "must fly", "doth love", "would stay", "can hear"]
OBJECTS = ["of the sea", "to the court", "upon the hill", "in the dark", "with a sword", "for the crown",
           "by the moon", "at the gate"]
FOLIO_WORD = "Zyxwqfolio"  # only in othello_gut_f.txt (First Folio spelling: must never be read)
POEM_WORD = "Quxbarian"  # only in sonnets_gut.txt (a poem: must never be read)
HELD_OUT = "othello"
CONTEXT, VOCABULARY = 16, 300


def play_text(name: str, seed: int, lines: int = 90) -> str:
    rng = random.Random(seed)
    rows = []
    for _ in range(lines):
        speaker = rng.choice(SPEAKERS[name])
        rows.append(f"{speaker}. {rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)}.")
    return "\n".join(rows) + "\n"


def write_plays(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(SPEAKERS):
        (folder / f"{name}_gut.txt").write_text(play_text(name, seed), encoding="utf-8")
    (folder / "othello_gut_f.txt").write_text(f"IAGO. {FOLIO_WORD} quoth the folio.\n" * 40, encoding="utf-8")
    (folder / "sonnets_gut.txt").write_text(f"{POEM_WORD} sonnetude of the rose.\n" * 40, encoding="utf-8")
    (folder / "metadata.txt").write_text("not a play\n")
    return folder


@pytest.fixture(scope="session")
def plays(tmp_path_factory) -> Path:
    return write_plays(tmp_path_factory.mktemp("plays"))


@pytest.fixture(scope="session")
def lm_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lm_cache")


@pytest.fixture(autouse=True)
def private_lm_cache(lm_cache, monkeypatch):
    """Tokenizers written under this session's folder, never the user's ~/.cache."""
    monkeypatch.setenv("POTSTILL_CACHE_DIR", str(lm_cache))


def data_args(**changes) -> dict:
    return {"context": CONTEXT, "tokenizer": "bpe", "vocab_size": VOCABULARY, "test_plays": [HELD_OUT], **changes}


def lm_recipe(plays: Path, **changes) -> dict:
    """Teacher: GPT-2 1 layer x 32; student 1 layer x 16 (2 heads), context 16, token KD (forward KL)."""
    recipe = {
        "name": "tiny_lm",
        "seed": 0,
        "data": {"name": "shakespeare", "root": str(plays), "args": data_args(), "batch_size": 16, "eval_batch_size": 64},
        "teacher": {
            "model": {"name": "hf_lm_config", "args": {"layers": 1, "hidden": 32, "heads": 2}},
            "train": {"epochs": 4, "optimizer": "adamw", "lr": 1.0e-2},
        },
        "student": {"name": "hf_lm_config", "args": {"layers": 1, "hidden": 16, "heads": 2}},
        "train": {"epochs": 2, "optimizer": "adamw", "lr": 5.0e-3},
        "distill": {"loss": "forward_kl", "temperature": 1.0, "alpha": 0.5, "beta": 0.5},
        "report": {"latency_batch_size": 4, "latency_repeats": 1},
    }
    return with_changes(copy.deepcopy(recipe), changes)


def cli(capsys, *argv) -> tuple[int, str, str]:
    """potstill ARGV in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_teacher(folder: Path, plays: Path, cache: Path, **changes) -> Path:
    """`potstill train` of the recipe's teacher into folder/run; returns the run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = write_recipe(folder, lm_recipe(plays, **changes), "teacher.yaml")
    with pytest.MonkeyPatch.context() as patch:  # session fixtures run before the per-test cache fixture
        patch.setenv("POTSTILL_CACHE_DIR", str(cache))
        code = main(["train", str(path), "--run-dir", str(folder / "run"), "--quiet"])
    assert code == 0
    return folder / "run"


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory, plays, lm_cache) -> Path:
    """A trained teacher (4 epochs: test perplexity about 21, token frequencies alone about 47)."""
    return train_teacher(tmp_path_factory.mktemp("teacher"), plays, lm_cache)


def distill_recipe(plays: Path, teacher: Path, **changes) -> dict:
    recipe = lm_recipe(plays, **changes)
    recipe["teacher"]["checkpoint"] = str(teacher)
    recipe["teacher"].pop("train", None)
    return recipe
