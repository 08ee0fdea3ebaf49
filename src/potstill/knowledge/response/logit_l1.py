"""Mean absolute error between logits: the discrepancy of data-free adversarial distillation.

Fang, Song, Zhang, Wang & Song, "Data-Free Adversarial Distillation", arXiv:1912.11006, eq. 4:

    L_MAE = (1 / (B * K)) * sum_b sum_k | z_t[b, k] - z_s[b, k] |

Unlike a KL between softmaxes it does not vanish when the student is already confident, which
keeps the adversarial generator's gradient alive (the paper's argument for it); usable as a plain
logit-matching loss too.
"""

from __future__ import annotations

import torch

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs


@LOSSES.register("logit_l1")
class LogitL1(DistillationLoss):
    """Mean absolute difference of student and teacher logits (DFAD, Fang et al. 2019, arXiv:1912.11006)."""

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return (student["logits"] - teacher["logits"]).abs().mean()
