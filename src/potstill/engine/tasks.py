"""What a task measures: the loop, the held-out evaluation and the report ask the data's task,
never assume one. Every dataset potstill reads today is classification ((B, K) logits against
(B,) class indices), images and text alike; a language-model task (perplexity, next-token
agreement) is one more class here, chosen by its data, with no change to the loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from potstill.engine.metrics import accuracy, agreement, expected_calibration_error, macro_f1, predict


class Classification:
    """Top-1 accuracy while training and on held-out splits; the report adds macro-F1, agreement
    with the teacher and calibration (ECE)."""

    name = "classification"

    def step_counts(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """(correct, counted) on one training batch, without a host sync (the loop sums them)."""
        return (logits.argmax(dim=1) == batch["target"]).sum(), len(batch["target"])

    def held_out(self, model: nn.Module, loader, split: str) -> dict[str, float]:
        """e.g. {"test_acc": 0.91}: what each epoch's record and line show for a held-out split."""
        return {f"{split}_acc": accuracy(*predict(model, loader))}

    def report(self, logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor | None,
               bins: int) -> dict[str, Any]:
        """A summary row's quality fields from a model's test logits (N, K)."""
        return {
            "test_acc": accuracy(logits, targets),
            "macro_f1": macro_f1(logits, targets),  # per-class F1, averaged: unbalanced classes count alike
            "teacher_agreement": agreement(logits, teacher_logits) if teacher_logits is not None else None,
            "ece": expected_calibration_error(logits, targets, bins),
        }


TASKS = {"classification": Classification()}
