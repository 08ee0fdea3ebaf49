"""Language-model data: token ids with next-token targets (potstill.positions).

    LMData(input_ids (N, L), attention_mask (N, L), targets (N, L), vocab_size, ...)

`targets[i, t]` is the token the model must predict after reading positions 0..t of row i, or
IGNORE_INDEX where nothing is to be learned (padding, a prompt, the end of a row). A corpus cut
into windows counts every position; prompt/response data counts the response only. Two ways
to build one:

    windows(stream, context)          # a token stream cut into (N, context) windows, all counted
    prompt_rows(prompts, responses)   # one row per pair, right-padded; only response tokens count
"""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, InitVar, dataclass
from typing import Any, ClassVar

import torch

from potstill.data.tokens import integer_tensor
from potstill.errors import PotstillError
from potstill.positions import IGNORE_INDEX


@dataclass
class LMData:
    """N rows of token ids (N, L), their attention masks and next-token targets (N, L)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor
    num_classes: int  # the vocabulary size: a language model classifies each position into V tokens
    _: KW_ONLY
    split: str = ""
    tokenizer: str = ""  # tokenizer_fingerprint of the tokenizer that made the ids
    tokenizer_path: str = ""  # the folder it was read from (decoding samples, saving it with a run)
    target_bytes: torch.Tensor | None = None  # (N,) UTF-8 bytes of each row's counted targets, decoded (bits per byte)
    known_valid: InitVar[bool] = False
    modality: ClassVar[str] = "text"
    task: ClassVar[str] = "causal_lm"

    def __post_init__(self, known_valid: bool) -> None:
        where = f"the {self.split} " if self.split else "the "
        self.input_ids = integer_tensor(self.input_ids, f"{where}token ids")
        self.attention_mask = integer_tensor(self.attention_mask, f"{where}attention mask")
        self.targets = integer_tensor(self.targets, f"{where}targets")
        if known_valid:
            return
        if self.input_ids.ndim != 2 or self.attention_mask.shape != self.input_ids.shape:
            raise PotstillError(
                f"{where}token ids and attention mask must both have shape (N, L), got "
                f"{tuple(self.input_ids.shape)} and {tuple(self.attention_mask.shape)}"
            )
        if self.targets.shape != self.input_ids.shape:
            raise PotstillError(
                f"{where}targets must have the token ids' shape {tuple(self.input_ids.shape)} (the next token at "
                f"each position, {IGNORE_INDEX} where nothing counts), got {tuple(self.targets.shape)}"
            )
        vocabulary = self.num_classes
        for name, values in (("token ids", self.input_ids), ("targets", self.targets[self.targets != IGNORE_INDEX])):
            if values.numel() and (int(values.min()) < 0 or int(values.max()) >= vocabulary):
                raise PotstillError(
                    f"{where}{name} hold values outside 0..{vocabulary - 1} (the vocabulary has {vocabulary} tokens)"
                )
        counted = (self.targets != IGNORE_INDEX).sum(dim=1)
        if len(counted) and int(counted.min()) == 0:
            row = int(torch.nonzero(counted == 0)[0])
            raise PotstillError(f"{where}row {row} has no position to learn (every target is {IGNORE_INDEX}); drop it")

    @classmethod
    def from_labels(cls, input_ids: Any, attention_mask: Any, labels: Any, vocab_size: int, **kwargs: Any) -> LMData:
        """From transformers' convention: `labels` (N, L) equal to input_ids where a token is learned and
        -100 elsewhere, shifted inside the model. Here targets are shifted once: targets[:, t] = labels[:, t + 1]."""
        labels = integer_tensor(labels, "labels")
        if labels.ndim != 2:
            raise PotstillError(f"labels must have shape (N, L) like the token ids, got {tuple(labels.shape)}")
        targets = torch.full_like(labels, IGNORE_INDEX)
        targets[:, :-1] = labels[:, 1:]
        return cls(input_ids, attention_mask, targets, vocab_size, **kwargs)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def input_shape(self) -> tuple[int]:
        return (self.input_ids.shape[1],)

    def counted_tokens(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())

    def subset(self, indices: torch.Tensor) -> LMData:
        target_bytes = None if self.target_bytes is None else self.target_bytes[indices]
        return dataclasses.replace(self, input_ids=self.input_ids[indices], attention_mask=self.attention_mask[indices],
                                   targets=self.targets[indices], target_bytes=target_bytes, known_valid=True)

    def fields(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows `index` cut after the last column any of them uses: input_ids, attention_mask, target (B, L')."""
        mask = self.attention_mask[index]
        columns = mask.any(dim=0).nonzero()
        length = int(columns.max()) + 1 if len(columns) else mask.shape[1]
        return {"input_ids": self.input_ids[index, :length], "attention_mask": mask[:, :length],
                "target": self.targets[index, :length]}

    def example(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Real rows (the first batch_size, cycled): the model inputs for timing."""
        fields = self.fields(torch.arange(batch_size, device=self.input_ids.device) % len(self))
        return {"input_ids": fields["input_ids"], "attention_mask": fields["attention_mask"]}

    def content(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "targets": self.targets}

    def to(self, device: Any) -> LMData:
        target_bytes = None if self.target_bytes is None else self.target_bytes.to(device)
        return dataclasses.replace(self, input_ids=self.input_ids.to(device), attention_mask=self.attention_mask.to(device),
                                   targets=self.targets.to(device), target_bytes=target_bytes, known_valid=True)


def windows(stream: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1-D token stream cut into non-overlapping windows: input_ids (N, context) and targets
    (N, context), targets[i, t] = stream[i * context + t + 1]. The tail that fills no window is dropped."""
    count = (len(stream) - 1) // context
    if count < 1:
        raise PotstillError(f"a text of {len(stream)} tokens fills no window of {context + 1} tokens; use a shorter context")
    used = stream[: count * context + 1]
    return used[:-1].reshape(count, context).clone(), used[1:].reshape(count, context).clone()


def prompt_rows(prompts: list[list[int]], responses: list[list[int]], length: int, pad_id: int,
                eos_id: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One right-padded row per (prompt, response) pair: ids, mask and targets (N, length), where only
    the response's tokens (and the EOS after it, when given) are targets. Rows must fit `length`."""
    rows = len(prompts)
    ids = torch.full((rows, length), pad_id, dtype=torch.long)
    mask = torch.zeros(rows, length, dtype=torch.long)
    targets = torch.full((rows, length), IGNORE_INDEX, dtype=torch.long)
    for row, (prompt, response) in enumerate(zip(prompts, responses)):
        tokens = list(prompt) + list(response) + ([eos_id] if eos_id is not None else [])
        if not prompt or len(tokens) > length or len(tokens) <= len(prompt):
            raise PotstillError(
                f"row {row}: a prompt of {len(prompt)} tokens and a response of {len(response)} (+ the end token) "
                f"need 1 to {length} tokens in all, with a non-empty prompt and something after it"
            )
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
        # position t predicts token t + 1: the response starts at len(prompt), predicted from len(prompt) - 1
        start = len(prompt) - 1
        targets[row, start : len(tokens) - 1] = torch.tensor(tokens[start + 1 :])
    return ids, mask, targets


def token_byte_lengths(tokenizer: Any) -> torch.Tensor | None:
    """(V,) UTF-8 bytes each token stands for, for a byte-level tokenizer (GPT-2's kind: each
    character of a token's string is one byte; special tokens stand for none); else None."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if type(decoder).__name__ != "ByteLevel":
        return None
    special = set(tokenizer.all_special_ids)
    lengths = torch.zeros(len(tokenizer), dtype=torch.long)
    for token, index in tokenizer.get_vocab().items():
        if index < len(lengths) and index not in special:
            lengths[index] = len(token)
    return lengths


def target_bytes(tokenizer: Any, targets: torch.Tensor) -> torch.Tensor:
    """(N,) UTF-8 bytes of each row's counted targets: summed per token for a byte-level tokenizer
    (a character split across two rows is counted once), else each row's decoded text."""
    lengths = token_byte_lengths(tokenizer)
    counted = targets != IGNORE_INDEX
    if lengths is not None:
        return torch.where(counted, lengths[targets.clamp(min=0)], 0).sum(dim=1)
    rows = [row[mask].tolist() for row, mask in zip(targets, counted)]
    return torch.tensor([len(text.encode("utf-8")) for text in tokenizer.batch_decode(rows, skip_special_tokens=True)])
