"""Which predictions count: one convention for classifiers and language models.

A batch's `target` has the shape of the logits without their last axis:

    classifier       logits (B, K)      target (B,)     a class index per sample
    language model   logits (B, L, V)   target (B, L)   the next token's id at each position

and IGNORE_INDEX (-100, PyTorch's and transformers' convention) marks a position that does not
count: padding, a prompt (only the response is learned), the last position of a row (no next
token). Every loss, metric and training count looks at the counted positions only, so a
language model is "a classifier over positions" and nothing downstream branches on the task.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def counted_mask(target: torch.Tensor) -> torch.Tensor:
    """Bool tensor of target's shape: True where a prediction counts."""
    return target != IGNORE_INDEX


def counted_rows(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The counted predictions as rows: logits (N, V) and targets (N,), N = counted positions.
    `logits` has target's shape plus one class axis."""
    if logits.shape[:-1] != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(target.shape)} (one class axis more)")
    mask = counted_mask(target)
    return logits[mask], target[mask]


def select_counted(target: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Each tensor (target's shape + trailing axes) at the counted positions: (N, ...)."""
    mask = counted_mask(target)
    return [tensor[mask] for tensor in tensors]
