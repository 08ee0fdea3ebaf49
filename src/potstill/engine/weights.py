"""Weights files a user hands in: teacher checkpoints (a safetensors file or a run folder), read
without unpickling anything and checked for names, shapes and finite values."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from potstill.engine.checkpoint import load_into, load_tensors
from potstill.errors import PotstillError
from potstill.preprocess import Preprocessing

TORCH_SAVE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


def teacher_weights_file(path: str, key: str = "teacher.checkpoint") -> Path:
    """A .safetensors file, or a run folder from `potstill train` / `potstill distill`; `key`: the
    recipe key that named it. potstill never unpickles: a torch.save file gets the conversion."""
    location = Path(path)
    if location.suffix in TORCH_SAVE_SUFFIXES:
        target = location.with_suffix(".safetensors")
        raise PotstillError(
            f"{key}: {location} is a torch.save file (Python pickles), and potstill never loads pickles, since loading "
            f"one can run any code; convert its state dict to safetensors once (read with weights_only=True, tensors "
            f"only): potstill convert {location} -o {target}, then set {key}: {target}"
        )
    candidates = [location] if location.suffix == ".safetensors" else [location / "teacher" / "model.safetensors", location / "model.safetensors"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise PotstillError(
        f"{key}: teacher checkpoint not found: looked for {', '.join(map(str, candidates))}; "
        f"train one with `potstill train RECIPE` or set {key} to a .safetensors file"
    )


def load_weights(model: nn.Module, path: Path, what: str, device: torch.device) -> Preprocessing | None:
    """Weights from a safetensors file into `model`: names and shapes must match, values must be
    finite. Returns the preprocessing the file records (None when it records none), read from the
    same open of the file."""
    tensors, header = load_tensors(path)
    bad = [name for name, tensor in tensors.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise PotstillError(
            f"{path} holds NaN or infinite values ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); the {what} it was "
            "saved from had diverged: use an earlier checkpoint or train it again"
        )
    load_into(model, {k: v.to(device) for k, v in tensors.items()}, str(path), what)
    return Preprocessing.from_header(header.get("preprocessing"))


def header_of(path: Path) -> dict:
    """The potstill header of a safetensors file, read without loading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as reader:
            header = json.loads((reader.metadata() or {}).get("potstill", "{}"))
    except (SafetensorError, OSError, ValueError):
        return {}
    return header if isinstance(header, dict) else {}
