"""A byte-level BPE tokenizer trained locally on the training texts (seconds), like GPT-2's.

    folder = train_bpe(texts, vocab_size=2048)   # a folder AutoTokenizer reads; cached by content

Byte-level: every text is first turned into bytes, so no character is ever unknown and decoding
gives back the exact text. One special token, `<|endoftext|>`, ends a document and pads rows.
Training is deterministic, and the folder is cached under $POTSTILL_CACHE_DIR/tokenizers/<sha256
of the texts, the vocabulary size and the tokenizers version>/, written to a temporary folder
first and renamed into place, so a half-written tokenizer is never used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from potstill.cache_dir import cache_root
from potstill.data.tokens import hash_texts
from potstill.engine.checkpoint import atomic_folder
from potstill.errors import PotstillError

END = "<|endoftext|>"
MIN_VOCABULARY = 257  # 256 bytes + the end token


def tokenizers_module():
    try:
        import tokenizers
    except ImportError as error:
        raise PotstillError(f"training a tokenizer needs the tokenizers package ({error}); pip install -e '.[text]'") from None
    return tokenizers


def bpe_key(texts: list[str], vocab_size: int) -> str:
    tokenizers = tokenizers_module()
    digest = hashlib.sha256(json.dumps({"vocab_size": vocab_size, "tokenizers": tokenizers.__version__,
                                        "kind": "byte-level BPE", "special": [END]}).encode())
    hash_texts(digest, texts)
    return digest.hexdigest()


def train_bpe(texts: list[str], vocab_size: int) -> Path:
    """The folder of a byte-level BPE tokenizer with `vocab_size` tokens trained on `texts`."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or not MIN_VOCABULARY <= vocab_size <= 1_000_000:
        raise PotstillError(
            f"vocab_size must be a whole number from {MIN_VOCABULARY} (256 bytes + the end token) to 1000000, "
            f"got {vocab_size!r}; 2048 suits a small corpus"
        )
    root = cache_root() / "tokenizers"
    folder = root / bpe_key(texts, vocab_size)
    if not (folder / "tokenizer.json").is_file():
        atomic_folder(folder, lambda staging: save_trained(texts, vocab_size, staging), "tokenizer.json")
    return folder


def save_trained(texts: list[str], vocab_size: int, folder: Path) -> None:
    tokenizers = tokenizers_module()
    from potstill.models.hf_files import transformers_module

    model = tokenizers.Tokenizer(tokenizers.models.BPE())
    model.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[END], show_progress=False,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    model.train_from_iterator(texts, trainer=trainer, length=len(texts))
    fast = transformers_module().PreTrainedTokenizerFast(
        tokenizer_object=model, eos_token=END, pad_token=END, bos_token=END, unk_token=None
    )
    fast.save_pretrained(str(folder))
