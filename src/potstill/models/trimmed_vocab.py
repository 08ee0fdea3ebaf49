"""A causal language model restricted to the tokens a corpus uses: a trimmed vocabulary.

    vocab = VocabMap.build(train_ids, tokenizer, always=[eos, pad])  # the kept ids, sorted: new id = position
    vocab.save("runs/gemma_vocab.json"); VocabMap.load("runs/gemma_vocab.json")
    trim_vocabulary(model, vocab.kept)        # embedding and output rows of the kept ids only, in place
    dropped_mass(full_logits, vocab.kept)     # (...,) the probability the full model puts outside them

A big tokenizer (Gemma's 262,144 tokens) gives a small student an output layer it cannot afford,
while a corpus of a few plays uses ten thousand of those tokens at most. The data keeps the ids that
occur in its training text (plus the special tokens) and renumbers them 0..V'-1 in id order; the
teacher is cut to the same V' rows of its input embedding and of its output layer. Its logits
are then exactly the full model's logits at the kept ids (`logits[..., kept]`, computed without the
other 250,000 columns: 2.8x faster for Gemma-3-270M on Shakespeare), so its softmax over V' tokens is

    p'(v) = p(v) / sum_{u kept} p(u)

the full distribution with the mass of the dropped tokens renormalised away. `dropped_mass`
measures that mass (docs/gemma.md gives it for Shakespeare).

The map is saved as JSON with a fingerprint (SHA-256 of the full tokenizer's fingerprint and the
kept ids), which stands for the tokenizer in the text record of the data and of the teacher: a
teacher trimmed with one map refuses data trimmed with another.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.models.hf import RECORD, TextRecord

FORMAT = "potstill vocab map 1"


@dataclass(frozen=True)
class VocabMap:
    """The ids of a full vocabulary that a trimmed one keeps: trimmed id i is full id kept[i]."""

    tokenizer: str  # tokenizer_fingerprint of the full tokenizer
    kept: tuple[int, ...]  # sorted, distinct
    tokenizer_path: str = ""  # where the full tokenizer was read from (messages only)

    @classmethod
    def build(cls, ids: Iterable[int], tokenizer: str, always: Iterable[int | None] = (), tokenizer_path: str = "") -> VocabMap:
        """The map keeping every id of `ids` and of `always` (None entries are skipped)."""
        kept = {int(i) for i in ids} | {int(i) for i in always if i is not None}
        return cls(tokenizer, tuple(sorted(kept)), tokenizer_path)

    @property
    def size(self) -> int:
        return len(self.kept)

    @property
    def fingerprint(self) -> str:
        text = json.dumps({"tokenizer": self.tokenizer, "kept": list(self.kept)}, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def kept_tensor(self) -> torch.Tensor:
        return torch.tensor(self.kept, dtype=torch.long, device="cpu")  # cpu even under a meta default device

    def trimmed_id(self, full_id: int | None) -> int | None:
        """The trimmed id of one full id; None when the id is not kept (or is None)."""
        if full_id is None:
            return None
        position = int(torch.searchsorted(self.kept_tensor(), torch.tensor(full_id, device="cpu")))
        return position if position < self.size and self.kept[position] == full_id else None

    def encode(self, ids: torch.Tensor, fallback: int | None = None) -> torch.Tensor:
        """Full ids -> trimmed ids; an id that is not kept becomes `fallback` (a trimmed id), or is
        refused when no fallback is given."""
        kept = self.kept_tensor().to(ids.device)
        position = torch.searchsorted(kept, ids).clamp(max=self.size - 1)
        found = kept[position] == ids
        if not bool(found.all()):
            if fallback is None:
                missing = sorted(set(ids[~found].tolist()))[:5]
                raise PotstillError(f"token ids {missing} are not in the trimmed vocabulary of {self.size} tokens")
            position = torch.where(found, position, torch.full_like(position, fallback))
        return position

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Trimmed ids -> full ids."""
        return self.kept_tensor().to(ids.device)[ids]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "tokenizer": self.tokenizer, "tokenizer_path": self.tokenizer_path,
                "size": self.size, "fingerprint": self.fingerprint, "kept": list(self.kept)}

    def save(self, path: str | Path) -> Path:
        """Write the map as JSON (atomically: a reader never sees half a file); unchanged content is not rewritten."""
        path = Path(path).expanduser()
        text = json.dumps(self.to_json(), indent=0) + "\n"
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=".vocab-", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(staging, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> VocabMap:
        """A map written by `save`; a damaged or hand-edited one (its fingerprint no longer matches) is refused."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise PotstillError(
                f"vocabulary map {path} not found; the text_lm dataset writes it (data.args: trim_vocab: true, "
                f"vocab_map: {path})"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            kept = [int(i) for i in data["kept"]]
            vocab = cls(str(data["tokenizer"]), tuple(kept), str(data.get("tokenizer_path", "")))
            stored = data["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise PotstillError(f"{path} is not a vocabulary map ({type(error).__name__}: {error})") from None
        if data.get("format") != FORMAT or kept != sorted(set(kept)) or not kept or kept[0] < 0 or stored != vocab.fingerprint:
            raise PotstillError(f"{path} is damaged or was edited by hand (its ids or fingerprint do not check out); "
                                "delete it and load the data again to write it anew")
        return vocab


def trim_vocabulary(model: nn.Module, kept: torch.Tensor | Sequence[int]) -> nn.Module:
    """Keep only the rows `kept` (full ids, sorted) of a transformers causal LM's input embedding
    and output layer, in place: the model then reads and predicts trimmed ids, and its logits are
    the full model's logits[..., kept]. Tied weights stay tied. Works on the meta device (shapes only)."""
    kept = torch.as_tensor(kept.tolist() if isinstance(kept, torch.Tensor) else list(kept), dtype=torch.long, device="cpu")
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    if not isinstance(embedding, nn.Embedding):
        raise PotstillError(f"cannot trim the vocabulary of {type(model).__name__}: its input embedding is a "
                            f"{type(embedding).__name__}, not an nn.Embedding")
    rows = embedding.num_embeddings
    if len(kept) == 0 or int(kept.max()) >= rows or int(kept.min()) < 0:
        raise PotstillError(f"the vocabulary map keeps ids up to {int(kept.max()) if len(kept) else '-'} but the model "
                            f"embeds {rows} tokens: the map was made with another tokenizer")
    tied = head is not None and head.weight is embedding.weight
    index = kept.to(embedding.weight.device)
    with torch.no_grad():
        embedding.weight = nn.Parameter(embedding.weight.index_select(0, index), requires_grad=embedding.weight.requires_grad)
        if embedding.padding_idx is not None:
            old = torch.tensor(embedding.padding_idx, device="cpu")
            position = int(torch.searchsorted(kept, old))
            embedding.padding_idx = position if position < len(kept) and int(kept[position]) == int(old) else None
        embedding.num_embeddings = len(kept)
        if head is not None:
            if tied:
                head.weight = embedding.weight
            else:
                head.weight = nn.Parameter(head.weight.index_select(0, index.to(head.weight.device)),
                                           requires_grad=head.weight.requires_grad)
            if getattr(head, "bias", None) is not None:
                head.bias = nn.Parameter(head.bias.index_select(0, index.to(head.bias.device)), requires_grad=head.bias.requires_grad)
            head.out_features = len(kept)
    model.config.vocab_size = len(kept)
    return model


def attach_trimmed_record(model: nn.Module, vocab: VocabMap, name: str, max_positions: int) -> nn.Module:
    """The text record of a trimmed model: its 'tokenizer' is the vocabulary map (fingerprint and size)."""
    record = TextRecord(f"{name} trimmed to {vocab.size} tokens", vocab.fingerprint, vocab.size,
                        model.get_input_embeddings().num_embeddings, max_positions)
    object.__setattr__(model, RECORD, record)
    return model


def dropped_mass(logits: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """(..., V) full logits -> (...,) the probability outside the kept ids, 1 - sum_{v kept} p(v),
    in float32 or wider (log space: a tiny mass is not lost to rounding until the last step)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    kept_log_mass = logits.index_select(-1, kept.to(logits.device)).logsumexp(dim=-1) - logits.logsumexp(dim=-1)
    return -torch.expm1(kept_log_mass)
