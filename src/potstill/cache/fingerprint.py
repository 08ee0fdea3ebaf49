"""What a cache was built from, so that using it with anything else is an error, not a silent mix.

A fingerprint is a small JSON-able dict: the cache format, the teacher (architecture, its input
preprocessing and a SHA-256 of its weights), the training data (a SHA-256 of the images and
labels after splitting), the bank of views and what is stored. Two fingerprints are compared key by
key and every difference is named in words.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

FORMAT = 2  # 2: the teacher's own preprocessing replaced the data normalisation


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order (independent of dict order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fingerprint(
    *, teacher: dict[str, Any], teacher_state: dict[str, torch.Tensor], data: dict[str, Any],
    inputs: dict[str, torch.Tensor], targets: torch.Tensor, views: dict[str, Any], outputs: dict[str, Any],
) -> dict[str, Any]:
    """`inputs`: the data's content by name (`data.content()`: images, or token ids and masks)."""
    return {
        "format": FORMAT,
        "teacher": {**teacher, "weights_sha256": tensors_sha256(teacher_state)},
        "data": {**data, "samples": len(targets), "content_sha256": tensors_sha256({**inputs, "targets": targets})},
        "views": views,
        "outputs": outputs,
    }


WHAT = {
    "format": "the cache format of this potstill version",
    "teacher": "the teacher",
    "data": "the training data",
    "views": "the views",
    "outputs": "what is stored",
}


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences, e.g. 'the teacher: weights_sha256 3f2a9c1b… -> 9b1c04d2…'."""
    found = []
    for section, words in WHAT.items():
        old, new = saved.get(section), current.get(section)
        if old == new:
            continue
        if not (isinstance(old, dict) and isinstance(new, dict)):
            found.append(f"{words}: {short(old)} -> {short(new)}")
            continue
        changed = [f"{key} {short(old.get(key))} -> {short(new.get(key))}" for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
        found.append(f"{words}: {', '.join(changed)}")
    return found


def short(value: Any) -> str:
    text = str(value)
    return text[:10] + "…" if isinstance(value, str) and len(value) == 64 else text
