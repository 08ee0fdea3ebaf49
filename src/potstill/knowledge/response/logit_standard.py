"""KD on standardised logits.

Sun, Ren, Li, Wang & Cao, "Logit Standardization in Knowledge Distillation", CVPR 2024,
arXiv:2403.01427. Each model's logits are z-scored per sample before the softened KL,
    Z(z) = (z - mean(z)) / std(z)        (std over classes, unbiased as in the official code)
    L = T^2 * KL( softmax(Z(z_t) / T) || softmax(Z(z_s) / T) )
so the student matches the teacher's logit *relations* instead of their range; the effective
temperature of each model is T times its own logit std. Default base temperature T = 2 (the
paper's CIFAR-100 runs, with a KD weight of 9 and CE weight 1).
"""

from __future__ import annotations

import torch

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, check_positive
from potstill.knowledge.response.kd import soft_target_kl


def standardize(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score each row of (B, K) logits."""
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + eps)


@LOSSES.register("kd_standardized")
class StandardizedKD(DistillationLoss):
    """KD after z-scoring both models' logits (Sun et al. CVPR 2024, arXiv:2403.01427)."""

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        check_positive("kd_standardized", temperature=temperature)
        self.temperature = float(temperature)

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return soft_target_kl(standardize(student["logits"]), standardize(teacher["logits"]), self.temperature)
