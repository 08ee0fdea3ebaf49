"""Text as token ids: TokenData (ids, masks, labels in memory) and tokenisation cached on disk.

    input_ids, attention_mask, notes = tokenize(texts, "minilm-l6", max_length=128)

Every text is padded (or truncated) to `max_length`, so every batch has the same length L. The
ids are cached as one safetensors file per (texts, tokenizer, max_length), never as a pickle:

    $POTSTILL_CACHE_DIR/tokens/<sha256>.safetensors   (POTSTILL_CACHE_DIR defaults to ~/.cache/potstill)
        input_ids       (N, L) int32
        attention_mask  (N, L) uint8, 1 = real token, 0 = padding
        lengths         (N,)   int32, token count before truncation, special tokens included
        header          the file's own fingerprint, the tokenizer's fingerprint, max_length, N

A cache file is used only when its header names the fingerprint it was looked up by and its
tensors have the shapes, values and masks that fingerprint implies; anything else is rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import KW_ONLY, InitVar, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from potstill.cache_dir import cache_root
from potstill.data.arrays import as_tensor
from potstill.engine.checkpoint import load_tensors, save_tensors
from potstill.errors import PotstillError
from potstill.models.hf_files import load_tokenizer, tokenizer_fingerprint

TOKENS_FORMAT = 1  # bump when the cached layout or the tokenisation call changes
MAX_LENGTH_LIMIT = 100_000
CHUNK = 4096  # texts per tokenizer call: bounds the tokenizer's int64 intermediate arrays


@dataclass
class TokenData:
    """Token ids of N texts padded to one length L, their attention masks and integer labels."""

    input_ids: torch.Tensor  # (N, L) int64
    attention_mask: torch.Tensor  # (N, L) int64, 1 = real token, 0 = padding
    targets: torch.Tensor  # (N,) int64 class indices 0..K-1
    num_classes: int
    _: KW_ONLY
    split: str = ""  # "train"/"test", for messages only
    label_names: list[str] | None = None
    tokenizer: str = ""  # tokenizer_fingerprint of the tokenizer that made the ids
    known_valid: InitVar[bool] = False  # rows or a device copy of checked data: skip the checks
    modality: ClassVar[str] = "text"

    def __post_init__(self, known_valid: bool) -> None:
        where = f"the {self.split} " if self.split else "the "
        self.input_ids = integer_tensor(self.input_ids, f"{where}token ids")
        self.attention_mask = integer_tensor(self.attention_mask, f"{where}attention mask")
        self.targets = integer_tensor(self.targets, f"{where}labels", "pass labels.long() if they are whole numbers")
        if known_valid:  # every loader (and so every evaluation) makes a device copy
            return
        if self.input_ids.ndim != 2:
            raise PotstillError(f"{where}token ids must have shape (N, L), got {tuple(self.input_ids.shape)}")
        if self.attention_mask.shape != self.input_ids.shape:
            raise PotstillError(
                f"{where}attention mask has shape {tuple(self.attention_mask.shape)} but the token ids have "
                f"{tuple(self.input_ids.shape)}; pass the mask the tokenizer returned with the ids"
            )
        if self.targets.ndim != 1 or len(self.targets) != len(self.input_ids):
            raise PotstillError(
                f"{where}labels must have shape ({len(self.input_ids)},), one class index per text, "
                f"got {tuple(self.targets.shape)}"
            )
        if self.input_ids.numel() and int(self.input_ids.min()) < 0:
            raise PotstillError(f"{where}token ids hold negative values; pass the ids the tokenizer returned")
        if bool(((self.attention_mask != 0) & (self.attention_mask != 1)).any()):
            raise PotstillError(f"{where}attention mask must hold only 0 (padding) and 1 (real token)")
        empty = torch.nonzero(self.attention_mask.sum(dim=1) == 0).flatten()
        if len(empty):
            raise PotstillError(
                f"{where}texts {', '.join(str(int(i)) for i in empty[:5])}{' ...' if len(empty) > 5 else ''} have "
                "no real token (attention mask all 0); drop empty texts before tokenising"
            )
        if len(self.targets) and (int(self.targets.min()) < 0 or int(self.targets.max()) >= self.num_classes):
            raise PotstillError(
                f"{where}labels range over {int(self.targets.min())}..{int(self.targets.max())} but the data declares "
                f"{self.num_classes} classes (0..{self.num_classes - 1}); fix the labels or num_classes"
            )
        if self.label_names is not None and len(self.label_names) != self.num_classes:
            raise PotstillError(
                f"{where}label names list {len(self.label_names)} classes but num_classes is {self.num_classes}; "
                "give one name per class"
            )

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def input_shape(self) -> tuple[int]:
        return (self.input_ids.shape[1],)

    def subset(self, indices: torch.Tensor) -> TokenData:
        return dataclasses.replace(
            self,
            input_ids=self.input_ids[indices],
            attention_mask=self.attention_mask[indices],
            targets=self.targets[indices],
            known_valid=True,
        )

    def fields(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model inputs of rows `index`: {"input_ids": (B, L'), "attention_mask": (B, L')}, cut
        after the last column where any of these rows has a real token: padding that every row of
        the batch has changes no output (it is masked) but costs as much as a real token."""
        mask = self.attention_mask[index]  # (B, L)
        columns = mask.any(dim=0).nonzero()
        length = int(columns.max()) + 1 if len(columns) else mask.shape[1]
        return {"input_ids": self.input_ids[index, :length], "attention_mask": mask[:, :length]}

    def example(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Real rows of this data (the first batch_size, cycled) for timing a model: a text model's
        cost depends on the sequence lengths, so random ids of full length would overstate it."""
        return self.fields(torch.arange(batch_size, device=self.input_ids.device) % len(self))

    def content(self) -> dict[str, torch.Tensor]:
        """What the samples are, by name (a cache fingerprints it)."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def to(self, device: Any) -> TokenData:
        """A copy whose tensors live on `device`."""
        return dataclasses.replace(
            self,
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            targets=self.targets.to(device),
            known_valid=True,
        )


def integer_tensor(value: Any, what: str, fix: str = "pass the integer tensors the tokenizer returned") -> torch.Tensor:
    tensor = as_tensor(value, what)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise PotstillError(f"{what} are {tensor.dtype}, but potstill needs integers (nothing is rounded); {fix}")
    return tensor.long()


@dataclass
class Encoded:
    """What `encode` returns: ids and masks (N, L) int64, token counts before truncation (N,)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    lengths: torch.Tensor
    tokenizer: str  # tokenizer_fingerprint
    notes: list[str]


def tokenize(
    texts: list[str], tokenizer_name: str, max_length: int, *, what: str = "texts"
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(input_ids (N, L) int64, attention_mask (N, L) int64, notes) of `texts`, L = max_length; cached."""
    encoded = encode(texts, tokenizer_name, max_length, what=what)
    return encoded.input_ids, encoded.attention_mask, encoded.notes + truncation_notes(encoded, max_length, what)


def truncation_notes(encoded: Encoded, max_length: int, what: str = "texts") -> list[str]:
    """['12 of 3000 texts truncated to 128 tokens'], or [] when every text fits."""
    truncated = int((encoded.lengths > max_length).sum())
    return [f"{truncated} of {len(encoded.lengths)} {what} truncated to {max_length} tokens"] if truncated else []


def encode(texts: list[str], tokenizer_name: str, max_length: int, *, what: str = "texts") -> Encoded:
    """Tokenise `texts` with the tokenizer of a local model folder, or read the ids from the cache."""
    check_max_length(max_length)
    if not isinstance(texts, (list, tuple)) or not all(isinstance(text, str) for text in texts):
        raise PotstillError(f"{what} must be a list of strings")
    tokenizer = load_tokenizer(tokenizer_name)
    fingerprint = tokenizer_fingerprint(tokenizer)
    key = cache_key(texts, fingerprint, max_length)
    path = cache_folder() / f"{key}.safetensors"
    notes: list[str] = []
    cached = read_cache(path, key, len(texts), max_length, len(tokenizer), notes) if path.exists() else None
    if cached is not None:
        ids, mask, lengths = cached
        notes.append(f"token ids of {len(texts)} {what} read from the cache {path}")
    else:
        ids, mask, lengths = run_tokenizer(tokenizer, texts, max_length, notes)
        header = {"fingerprint": key, "format": TOKENS_FORMAT, "tokenizer": fingerprint}
        header.update(max_length=max_length, count=len(texts), what="potstill token cache")
        try:
            save_tensors(path, {"input_ids": ids, "attention_mask": mask, "lengths": lengths}, header)
            notes.append(f"{len(texts)} {what} tokenised with {tokenizer_name}, cached in {path}")
        except OSError as error:
            notes.append(f"{len(texts)} {what} tokenised with {tokenizer_name}; not cached ({error})")
    if len(lengths) and int(lengths.min()) == 0:
        first = int(torch.nonzero(lengths == 0)[0])
        raise PotstillError(f"{what}: text {first} gives no token at all with {tokenizer_name}; drop empty texts")
    return Encoded(ids.long(), mask.long(), lengths.long(), fingerprint, notes)


def check_max_length(max_length: object) -> None:
    if not isinstance(max_length, int) or isinstance(max_length, bool) or not 2 <= max_length <= MAX_LENGTH_LIMIT:
        raise PotstillError(
            f"max_length must be a whole number of tokens from 2 to {MAX_LENGTH_LIMIT}, got {max_length!r}; "
            "128 suits sentences, 512 paragraphs"
        )


def cache_folder() -> Path:
    return cache_root() / "tokens"


def cache_key(texts: list[str], tokenizer: str, max_length: int) -> str:
    """SHA-256 of the format, the tokenizer's fingerprint, max_length and every text (length-prefixed)."""
    digest = hashlib.sha256()
    head = {"format": TOKENS_FORMAT, "tokenizer": tokenizer, "max_length": max_length, "count": len(texts)}
    digest.update(json.dumps(head, sort_keys=True).encode())
    hash_texts(digest, texts)
    return digest.hexdigest()


def hash_texts(digest: Any, texts: list[str]) -> None:
    """Feed every text to `digest`, length-prefixed (so ["ab", "c"] and ["a", "bc"] differ)."""
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)


def run_tokenizer(tokenizer: Any, texts: list[str], max_length: int, notes: list[str]):
    """(ids (N, L) int32, mask (N, L) uint8, lengths (N,) int32), padded and truncated to L = max_length."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise PotstillError(
                "the tokenizer has neither a padding nor an end-of-text token; save one with a pad_token"
            )
        tokenizer.pad_token = tokenizer.eos_token  # the mask hides padding; its id only has to be valid
        notes.append(f"the tokenizer has no padding token: padded with its end token {tokenizer.eos_token!r}")
    ids = torch.zeros(len(texts), max_length, dtype=torch.int32)  # (N, L)
    mask = torch.zeros(len(texts), max_length, dtype=torch.uint8)  # (N, L)
    for start in range(0, len(texts), CHUNK):
        out = tokenizer(
            list(texts[start : start + CHUNK]),
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_attention_mask=True,
            return_tensors="np",
        )
        ids[start : start + CHUNK] = torch.from_numpy(out["input_ids"].astype("int32"))
        mask[start : start + CHUNK] = torch.from_numpy(out["attention_mask"].astype("uint8"))
    lengths = mask.sum(dim=1, dtype=torch.int32)  # (N,)
    full = torch.nonzero(lengths == max_length).flatten()  # these may have been cut: count their tokens
    for start in range(0, len(full), CHUNK):
        rows = full[start : start + CHUNK]
        counted = tokenizer([texts[int(i)] for i in rows], truncation=False)["input_ids"]
        lengths[rows] = torch.tensor([len(row) for row in counted], dtype=torch.int32)
    return ids, mask, lengths


def read_cache(path: Path, key: str, count: int, max_length: int, vocabulary: int, notes: list[str]):
    """The cached (ids, mask, lengths), or None (with a note) when the file is not what `key` promises."""
    try:
        tensors, header = load_tensors(path)
    except PotstillError as error:
        notes.append(f"token cache {path} unreadable ({error}): re-tokenised")
        return None
    shapes = {"input_ids": (torch.int32, (count, max_length)), "attention_mask": (torch.uint8, (count, max_length))}
    shapes["lengths"] = (torch.int32, (count,))
    valid = isinstance(header, dict) and header.get("fingerprint") == key and header.get("format") == TOKENS_FORMAT
    valid = valid and all(
        name in tensors and tensors[name].dtype == dtype and tuple(tensors[name].shape) == shape
        for name, (dtype, shape) in shapes.items()
    )
    ids, mask, lengths = (tensors.get(name) for name in shapes)
    if valid and count:  # values a damaged file could hold: ids outside the vocabulary, masks that disagree
        valid = 0 <= int(ids.min()) and int(ids.max()) < vocabulary and int(mask.max()) <= 1
        valid = valid and bool((mask.sum(dim=1) == lengths.clamp(max=max_length)).all())
    if not valid:
        notes.append(f"token cache {path} does not match its texts and tokenizer: re-tokenised")
        return None
    return ids, mask, lengths
