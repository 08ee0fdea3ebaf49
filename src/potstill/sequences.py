"""Teacher-written sequences for sequence-level KD (Kim & Rush, "Sequence-Level Knowledge
Distillation", EMNLP 2016, arXiv 1606.07947), generated once and stored like the teacher cache.

    potstill generate RECIPE      # the teacher continues every training row's prompt; stored in shards
    potstill distill  RECIPE      # scheme seq_kd: the student learns the teacher's sequences

Folder layout:

    manifest.json              what the sequences were made from: the teacher's weights (SHA-256),
                               the prompts (SHA-256 of their ids), the tokenizer, the settings, rows
    shard_00000.safetensors    rows [0, SHARD) : sequences (n, W) int32, attention_mask, new_tokens (n, W) uint8

Every file is written to a temporary name and renamed into place, and each shard's header repeats
the manifest's fingerprint: a killed `generate` resumes at the first missing shard, and files made
from another teacher, other prompts or other settings are refused by name, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from potstill.cache.fingerprint import tensors_sha256
from potstill.engine.checkpoint import atomic_write, load_tensors, save_tensors
from potstill.errors import PotstillError
from potstill.generation import generate
from potstill.positions import IGNORE_INDEX

SHARD = 1024  # rows per shard: a killed run loses at most one shard's work
FORMAT = 1


@dataclass(frozen=True)
class Settings:
    prompt_tokens: int | None
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int


def model_digest(model: nn.Module) -> str:
    """SHA-256 of a model's named weights (as the teacher cache hashes them): equal <=> the same teacher."""
    return tensors_sha256(model.state_dict())


def expected_manifest(teacher: nn.Module, prompts: torch.Tensor, mask: torch.Tensor, tokenizer: str,
                      settings: Settings) -> dict:
    manifest = {
        "format": FORMAT, "what": "potstill teacher sequences", "teacher": model_digest(teacher),
        "prompts": tensors_sha256({"prompts": prompts, "mask": mask}), "tokenizer": tokenizer, "rows": len(prompts),
        "settings": settings.__dict__,
    }
    manifest["fingerprint"] = hashlib.sha256(json.dumps(
        {key: manifest[key] for key in ("format", "teacher", "prompts", "tokenizer", "rows", "settings")},
        sort_keys=True).encode()).hexdigest()
    return manifest


def check_manifest(folder: Path, expected: dict, fix: str) -> None:
    """Refuse sequences made from another teacher, other prompts, tokenizer or settings, naming which."""
    path = folder / "manifest.json"
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PotstillError(f"{path} is unreadable ({error}); {fix}") from None
    for key, words in (("teacher", "another teacher (its weights differ)"), ("prompts", "other prompts"),
                       ("tokenizer", "another tokenizer"), ("settings", "other generation settings")):
        if found.get(key) != expected[key]:
            raise PotstillError(f"the sequences in {folder} were written from {words}: {found.get(key)!r:.80} vs "
                                f"{expected[key]!r:.80} now; {fix}")


def shard_path(folder: Path, number: int) -> Path:
    return folder / f"shard_{number:05d}.safetensors"


def write_sequences(teacher: nn.Module, prompts: torch.Tensor, mask: torch.Tensor, folder: Path, manifest: dict,
                    settings: Settings, pad: int, eos: int | None, batch_size: int, say) -> int:
    """Generate the missing shards; returns how many shards were written now."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest_file = folder / "manifest.json"
    if manifest_file.is_file():
        check_manifest(folder, manifest, f"delete {folder} or give another folder (--out) to generate anew")
    else:
        atomic_write(manifest_file, json.dumps(manifest, indent=1))
    written, shards = 0, (len(prompts) + SHARD - 1) // SHARD
    for number in range(shards):
        path = shard_path(folder, number)
        if path.is_file() and readable_shard(path, manifest["fingerprint"]):
            continue
        rows = slice(number * SHARD, min(len(prompts), (number + 1) * SHARD))
        parts = []
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + number)  # resumable per shard
        for start in range(rows.start, rows.stop, batch_size):
            stop = min(rows.stop, start + batch_size)
            parts.append(generate(teacher, prompts[start:stop], mask[start:stop], max_new_tokens=settings.max_new_tokens,
                                  temperature=settings.temperature, top_p=settings.top_p, eos_token_id=eos,
                                  pad_token_id=pad, generator=generator))
        save_tensors(path, right_aligned(parts, pad), {"fingerprint": manifest["fingerprint"], "rows": [rows.start, rows.stop]})
        written += 1
        say(f"generate: shard {number + 1}/{shards} ({rows.stop} of {len(prompts)} rows)")
    return written


def right_aligned(parts: list, pad: int) -> dict[str, torch.Tensor]:
    """Batches of Generated as one right-padded block: real tokens from position 0 (positions as in training)."""
    width = max(part.sequences.shape[1] for part in parts)
    out = {"sequences": [], "attention_mask": [], "new_tokens": []}
    for part in parts:
        order = torch.argsort(part.attention_mask, dim=1, descending=True, stable=True)
        extra = width - part.sequences.shape[1]
        for name, value, fill in (("sequences", part.sequences, pad), ("attention_mask", part.attention_mask, 0),
                                  ("new_tokens", part.new_tokens.long(), 0)):
            out[name].append(torch.nn.functional.pad(value.gather(1, order), (0, extra), value=fill))
    return {"sequences": torch.cat(out["sequences"]).int(), "attention_mask": torch.cat(out["attention_mask"]).to(torch.uint8),
            "new_tokens": torch.cat(out["new_tokens"]).to(torch.uint8)}


def readable_shard(path: Path, fingerprint: str) -> bool:
    try:
        _, header = load_tensors(path)
    except PotstillError:
        return False
    return isinstance(header, dict) and header.get("fingerprint") == fingerprint


def read_sequences(folder: Path, manifest: dict, fix: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, targets) (N, W) of every stored row; targets only at generated tokens."""
    if not (folder / "manifest.json").is_file():
        raise PotstillError(f"no teacher sequences in {folder} (no manifest.json); {fix}")
    check_manifest(folder, manifest, fix)
    blocks = []
    for number in range((manifest["rows"] + SHARD - 1) // SHARD):
        path = shard_path(folder, number)
        if not path.is_file() or not readable_shard(path, manifest["fingerprint"]):
            raise PotstillError(f"{path} is missing or was not written for this manifest; {fix}")
        blocks.append(load_tensors(path)[0])
    width = max(block["sequences"].shape[1] for block in blocks)
    grab = lambda name: torch.cat([torch.nn.functional.pad(b[name].long(), (0, width - b[name].shape[1])) for b in blocks])  # noqa: E731
    ids, mask, new = grab("sequences"), grab("attention_mask"), grab("new_tokens").bool()
    targets = torch.full_like(ids, IGNORE_INDEX)
    targets[:, :-1] = torch.where(new[:, 1:], ids[:, 1:], IGNORE_INDEX)
    empty = int((new.sum(dim=1) == 0).sum())
    if empty:
        raise PotstillError(f"{empty} of {len(ids)} teacher sequences in {folder} have no generated token; {fix}")
    return ids, mask, targets
