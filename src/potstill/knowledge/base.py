"""What every distillation loss looks like."""

from __future__ import annotations

import torch
from torch import nn

from potstill.registry import Registry

LOSSES = Registry("loss")

# A model's outputs for one batch: "logits" (B, K) always; later issues add tapped features.
Outputs = dict[str, torch.Tensor]


class DistillationLoss(nn.Module):
    """Base class: compares student and teacher outputs on one batch and returns a scalar.

    `teacher` outputs arrive already detached (computed under inference mode), so a loss can
    never push gradients into a frozen teacher. Any learned projection a loss needs is a
    submodule of it, so it trains with the student.
    """

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError
